//! Tells the tests whether the development data (`../shared/data`, beside the repository) is
//! there. Without it, the corpus-wide tests are marked ignored (`cfg(tct_no_data)`), so that
//! `cargo test` on a fresh clone passes and lists them as "ignored, needs ../shared/data"
//! instead of panicking. `TCT_REQUIRE_DATA=1` (CI) never sets the cfg: there, missing data makes
//! those tests fail. The library itself does not read this cfg.
use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tct_no_data)");
    println!("cargo::rerun-if-env-changed=TCT_REQUIRE_DATA");
    // A path that does not exist makes cargo rerun this script on every build, which is what a
    // checkout without the data wants (the data may appear later).
    println!("cargo::rerun-if-changed=../shared/data/workflows/workflows.jsonl.gz");
    println!("cargo::rerun-if-changed=../shared/data/schemas");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let data = Path::new(&manifest).join("../shared/data");
    let present =
        data.join("workflows/workflows.jsonl.gz").is_file() && data.join("schemas").is_dir();
    let required = std::env::var_os("TCT_REQUIRE_DATA").is_some_and(|v| !v.is_empty());
    if !present && !required {
        println!("cargo::rustc-cfg=tct_no_data");
    }
}
