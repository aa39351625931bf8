//! Logging set-up: text on a terminal, one JSON object a line under Lambda.

/// Set up logging: `RUST_LOG` filters (default `info`); `json` writes one JSON object a line.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A second initialisation (e.g. in tests) is harmless; ignore it.
    if json {
        let _ = builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init();
    } else {
        let _ = builder.with_ansi(false).try_init();
    }
}
