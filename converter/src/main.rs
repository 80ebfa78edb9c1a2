//! `t5g-convert`: the standalone converter.
fn main() {
    eprintln!("error: not built yet");
    std::process::exit(2);
}
