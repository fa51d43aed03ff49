//! How a target runs, for the engine chosen by feature (see Cargo.toml).

#[cfg(all(feature = "afl", feature = "libfuzzer"))]
compile_error!("pick one engine: --features afl or --features libfuzzer");

/// AFL++ in persistent mode: many inputs per process, a panic aborts the
/// process so that AFL++ records the input as a crash.
#[cfg(feature = "afl")]
pub fn run(check: fn(&[u8])) {
    afl::fuzz!(|data: &[u8]| check(data));
}

/// No engine: check each file named on the command line (standard input if
/// none), so that a saved crash replays with its panic message and, with
/// `RUST_BACKTRACE=1`, its stack.
#[cfg(not(any(feature = "afl", feature = "libfuzzer")))]
pub fn run(check: fn(&[u8])) {
    use std::io::Read as _;

    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        let mut data = Vec::new();
        if let Err(err) = std::io::stdin().read_to_end(&mut data) {
            eprintln!("cannot read standard input: {err}");
            std::process::exit(2);
        }
        check(&data);
        return;
    }
    for file in files {
        match std::fs::read(&file) {
            Ok(data) => {
                eprintln!("{file}");
                check(&data);
            }
            Err(err) => {
                eprintln!("{file}: {err}");
                std::process::exit(2);
            }
        }
    }
    eprintln!("no property broken");
}
