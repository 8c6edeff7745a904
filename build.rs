//! Rebuilds the crate when a migration is added: the migrations are embedded at compile
//! time, and a new file alone would not otherwise trigger a rebuild.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
