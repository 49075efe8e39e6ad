//! Logging set-up: `tracing` with `RUST_LOG` filtering, text or JSON lines on stdout.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `LOG_FORMAT`, read on its own so logging works before the rest of the configuration is
/// validated (and can report what is wrong with it).
pub fn log_format_from_env() -> LogFormat {
    match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,aws_smithy_runtime=warn,aws_sdk_s3=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
