//! `CAIRN_TEST_MODE=anonymous` builds the component without its identity section.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(anonymous)");
    println!("cargo::rerun-if-env-changed=CAIRN_TEST_MODE");
    if std::env::var("CAIRN_TEST_MODE").as_deref() == Ok("anonymous") {
        println!("cargo::rustc-cfg=anonymous");
    }
}
