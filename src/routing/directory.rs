//! The DID directory: which tenant, number and AI profile a dialed number reaches, held in
//! memory so that routing an INVITE costs no database round trip.
//!
//! The whole table is loaded at start and reloaded after every API change to numbers,
//! tenants or AI profiles on this node (and periodically, for changes made on other
//! nodes). A reload swaps in a new map; readers never wait for one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::e164::Did;
pub use crate::store::Route;
use crate::store::{Result, Store};

/// The in-memory DID table; cheap to clone and share.
#[derive(Clone, Default)]
pub struct Directory {
    routes: Arc<RwLock<Arc<HashMap<String, Route>>>>,
    /// Serialises reloads so that an older snapshot never replaces a newer one.
    reload: Arc<tokio::sync::Mutex<()>>,
}

impl Directory {
    /// Loads the whole table from `store`.
    pub async fn load(store: &Store) -> Result<Directory> {
        let directory = Directory::default();
        directory.reload(store).await?;
        Ok(directory)
    }

    /// A table holding exactly `routes` (keyed by their DID).
    pub fn from_routes(routes: impl IntoIterator<Item = Route>) -> Directory {
        let map: HashMap<String, Route> = routes
            .into_iter()
            .map(|r| (r.did_number.clone(), r))
            .collect();
        Directory {
            routes: Arc::new(RwLock::new(Arc::new(map))),
            reload: Arc::default(),
        }
    }

    /// Replaces the table with the database's current content.
    pub async fn reload(&self, store: &Store) -> Result<()> {
        let _one_at_a_time = self.reload.lock().await;
        let rows = store.routes().await?;
        let map: HashMap<String, Route> = rows
            .into_iter()
            .map(|r| (r.did_number.clone(), r))
            .collect();
        metrics::gauge!("vca_directory_numbers").set(map.len() as f64);
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
        Ok(())
    }

    /// Re-reads one number after it was added or changed (or removes it when it is gone),
    /// without reloading the whole table.
    pub async fn refresh(&self, store: &Store, did: &str) -> Result<()> {
        let _one_at_a_time = self.reload.lock().await;
        let row = store.route(did).await?;
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let map = Arc::make_mut(&mut routes);
        match row {
            Some(route) => map.insert(did.to_owned(), route),
            None => map.remove(did),
        };
        metrics::gauge!("vca_directory_numbers").set(map.len() as f64);
        Ok(())
    }

    /// Reloads every `every`, so that changes made through another node arrive here.
    pub async fn run(self, store: Store, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = self.reload(&store).await {
                tracing::warn!(error = %e, "DID directory not reloaded");
            }
        }
    }

    /// The route of a dialed number, if it is known.
    pub fn lookup(&self, did: &Did) -> Option<Route> {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        routes.get(did.as_str()).cloned()
    }

    pub fn len(&self) -> usize {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{PhoneNumberId, TenantId};
    use crate::routing::e164::CountryCode;
    use crate::store::model::TenantStatus;

    fn route(did: &str) -> Route {
        Route {
            phone_number_id: PhoneNumberId::new(),
            tenant_id: TenantId::new(),
            did_number: did.to_owned(),
            is_active: true,
            trunk_id: None,
            ai_profile_id: None,
            tenant_status: TenantStatus::Active,
            max_concurrent_calls: 10,
        }
    }

    #[test]
    fn every_form_of_a_number_finds_its_route_and_nothing_else_does() {
        let a = route("+919876543210");
        let directory = Directory::from_routes([a.clone(), route("+918888888888")]);
        let india = CountryCode::default();
        for form in [
            "09876543210",
            "9876543210",
            "919876543210",
            "+91-98765-43210",
        ] {
            let did = Did::normalize(form, &india).unwrap();
            assert_eq!(directory.lookup(&did), Some(a.clone()), "{form}");
        }
        let unknown = Did::normalize("+911111111111", &india).unwrap();
        assert_eq!(directory.lookup(&unknown), None);
        assert_eq!(directory.len(), 2);
    }
}
