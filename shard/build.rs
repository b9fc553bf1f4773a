//! Compiles the C helpers that make float digits identical to Redis's: the long-double
//! arithmetic of INCRBYFLOAT, and the parsing and printing of sorted-set scores.
fn main() {
    println!("cargo:rerun-if-changed=src/ldouble.c");
    println!("cargo:rerun-if-changed=src/double.c");
    cc::Build::new()
        .file("src/ldouble.c")
        .file("src/double.c")
        .opt_level(2)
        .compile("percore_ldouble");
}
