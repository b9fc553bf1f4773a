//! Compiles the long-double helper that makes INCRBYFLOAT's digits identical to Redis's.
fn main() {
    println!("cargo:rerun-if-changed=src/ldouble.c");
    cc::Build::new()
        .file("src/ldouble.c")
        .opt_level(2)
        .compile("percore_ldouble");
}
