//! Rebuilds the crate when any file under `assets/` changes (or is added),
//! so the embedded dashboard is always the one in the tree.

fn main() {
    println!("cargo:rerun-if-changed=assets");
}
