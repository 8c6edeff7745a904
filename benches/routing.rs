//! DID normalisation and directory lookup: the routing cost of every INVITE.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use vca_sip::ids::{PhoneNumberId, TenantId};
use vca_sip::routing::directory::{Directory, Route};
use vca_sip::routing::e164::{CountryCode, Did};
use vca_sip::store::model::TenantStatus;

fn routing(c: &mut Criterion) {
    let india = CountryCode::default();
    let mut group = c.benchmark_group("routing");
    group.bench_function("normalize_national", |b| {
        b.iter(|| Did::normalize(black_box("09876543210"), &india))
    });
    group.bench_function("normalize_tel_separators", |b| {
        b.iter(|| Did::normalize(black_box("+91-98765-43210"), &india))
    });

    // 10,000 numbers, as in the load test.
    let directory = Directory::from_routes((0..10_000u64).map(|i| Route {
        phone_number_id: PhoneNumberId::new(),
        tenant_id: TenantId::new(),
        did_number: format!("+91{}", 7_000_000_000 + i),
        is_active: true,
        trunk_id: None,
        ai_profile_id: None,
        tenant_status: TenantStatus::Active,
        max_concurrent_calls: 100,
    }));
    group.bench_function("normalize_and_lookup_10k", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % 10_000;
            let raw = format!("0{}", 7_000_000_000 + i);
            let did = Did::normalize(&raw, &india).expect("valid");
            black_box(directory.lookup(&did))
        })
    });
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
