//! The `t5g` command line.
fn main() {
    eprintln!("error: no command yet");
    std::process::exit(2);
}
