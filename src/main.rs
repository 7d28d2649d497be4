//! The `switchyard` binary: see `switchyard::cli`.

// mimalloc keeps per-thread heaps, which suits one runtime per worker thread, and returns
// freed snapshot memory to the OS more readily than glibc's arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
