//! The DID directory: which tenant, number and AI profile a dialed number reaches, and
//! where the call's audio goes, held in memory so that routing an INVITE costs no database
//! round trip.
//!
//! The store reads each number with the profile that answers it (the number's own, else the
//! tenant's default) and that profile's media settings; a number that no profile answers is
//! echoed ([`CallMedia::Echo`]).
//!
//! The whole table is loaded at start and reloaded after every API change to numbers,
//! tenants or AI profiles on this node (and periodically, for changes made on other
//! nodes). A reload swaps in a new map; readers never wait for one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::e164::Did;
pub use crate::store::{CallMedia, ResolvedRoute, Route, StreamTarget};
use crate::store::{Result, Store};

/// The in-memory DID table; cheap to clone and share.
#[derive(Clone, Default)]
pub struct Directory {
    routes: Arc<RwLock<Arc<HashMap<String, ResolvedRoute>>>>,
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

    /// A table holding exactly `routes` (keyed by their DID), each echoed.
    pub fn from_routes(routes: impl IntoIterator<Item = Route>) -> Directory {
        Directory::from_resolved(routes.into_iter().map(|route| ResolvedRoute {
            route,
            media: CallMedia::Echo,
        }))
    }

    /// A table holding exactly `routes` with their media (keyed by their DID).
    pub fn from_resolved(routes: impl IntoIterator<Item = ResolvedRoute>) -> Directory {
        Directory {
            routes: Arc::new(RwLock::new(Arc::new(by_did(routes)))),
            reload: Arc::default(),
        }
    }

    /// Replaces the table with the database's current content.
    pub async fn reload(&self, store: &Store) -> Result<()> {
        let _one_at_a_time = self.reload.lock().await;
        let map = by_did(store.routes().await?);
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
        self.snapshot()
            .get(did.as_str())
            .map(|entry| entry.route.clone())
    }

    /// The route of a dialed number and where its calls' audio goes, if it is known.
    pub fn resolve(&self, did: &Did) -> Option<ResolvedRoute> {
        self.snapshot().get(did.as_str()).cloned()
    }

    /// The current table; a reload swaps in a new one without disturbing this one.
    fn snapshot(&self) -> Arc<HashMap<String, ResolvedRoute>> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn len(&self) -> usize {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keys routes by their DID.
fn by_did(routes: impl IntoIterator<Item = ResolvedRoute>) -> HashMap<String, ResolvedRoute> {
    routes
        .into_iter()
        .map(|r| (r.route.did_number.clone(), r))
        .collect()
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

    #[test]
    fn a_route_resolves_with_its_media_and_plain_routes_are_echoed() {
        use std::collections::BTreeMap;
        use std::sync::Arc;
        use std::time::Duration;

        use crate::ids::AiProfileId;
        use crate::store::model::StreamProtocol;

        let profile = AiProfileId::new();
        let stream = CallMedia::Stream(Arc::new(StreamTarget {
            ai_profile_id: profile,
            url: "wss://agent.example/stream".to_owned(),
            protocol: StreamProtocol::Exotel,
            auth_token: None,
            parameters: BTreeMap::new(),
            ca_pem: None,
            connect_timeout: Duration::from_millis(3000),
            max_queued_audio: Duration::from_secs(30),
            record: false,
        }));
        let mut streamed = route("+919876543210");
        streamed.ai_profile_id = Some(profile);
        let echoed = route("+918888888888");
        let directory = Directory::from_resolved([
            ResolvedRoute {
                route: streamed.clone(),
                media: stream.clone(),
            },
            ResolvedRoute {
                route: echoed.clone(),
                media: CallMedia::Echo,
            },
        ]);
        let india = CountryCode::default();
        let did = Did::normalize("9876543210", &india).unwrap();
        assert_eq!(
            directory.resolve(&did),
            Some(ResolvedRoute {
                route: streamed.clone(),
                media: stream
            })
        );
        assert_eq!(directory.lookup(&did), Some(streamed));
        let plain = Directory::from_routes([echoed.clone()]);
        let did = Did::normalize("+918888888888", &india).unwrap();
        assert_eq!(plain.resolve(&did).map(|r| r.media), Some(CallMedia::Echo));
    }
}
