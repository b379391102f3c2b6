//! The plugin's logs. Run by the host, records go to stderr as JSON lines
//! (`IGLU_LOG_FORMAT=json`), which the host re-emits at their own level,
//! target and fields and keeps for `iglu logs`; run otherwise, as plain
//! text. `RUST_LOG` sets the filter at start (default `info`); the host
//! changes it at run time with the reserved method
//! [`iglu_bus::LOG_LEVEL_METHOD`] (`iglu log-level <plugin> <filter>`).

use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::context::Context;
use crate::error::HandlerError;

/// The environment variable the host sets to `json`.
pub const FORMAT_ENV: &str = "IGLU_LOG_FORMAT";

struct Filter {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Mutex<String>,
}

static FILTER: OnceLock<Filter> = OnceLock::new();

/// Installs the subscriber (once; a program that set its own keeps it).
pub(crate) fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let (filter, spec) = match EnvFilter::try_new(&spec) {
        Ok(f) => (f, spec),
        Err(_) => (EnvFilter::new("info"), "info".to_owned()),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let json = std::env::var(FORMAT_ENV).is_ok_and(|v| v == "json");
    let json_layer = json.then(|| {
        fmt::layer()
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
    });
    let text_layer = (!json).then(|| {
        fmt::layer()
            .without_time()
            .with_target(false)
            .with_ansi(false)
            .with_writer(std::io::stderr)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(json_layer)
        .with(text_layer)
        .try_init();
    if installed.is_ok() {
        let _ = FILTER.set(Filter {
            handle,
            current: Mutex::new(spec),
        });
    }
}

/// The arguments of [`iglu_bus::LOG_LEVEL_METHOD`].
#[derive(Deserialize)]
pub(crate) struct SetFilter {
    filter: String,
}

/// Its answer.
#[derive(Serialize)]
pub(crate) struct FilterChanged {
    filter: String,
    previous: String,
}

/// Serves [`iglu_bus::LOG_LEVEL_METHOD`]: a new `RUST_LOG`-style filter.
pub(crate) async fn set_filter(
    _ctx: Context,
    args: SetFilter,
) -> Result<FilterChanged, HandlerError> {
    let Some(f) = FILTER.get() else {
        return Err(HandlerError::msg(
            "this plugin installed its own log subscriber; its filter cannot be changed from here",
        ));
    };
    let new = EnvFilter::try_new(&args.filter)
        .map_err(|e| HandlerError::msg(format!("{:?} is not a log filter: {e}", args.filter)))?;
    f.handle
        .reload(new)
        .map_err(|e| HandlerError::msg(format!("cannot change the filter: {e}")))?;
    let mut current = f.current.lock().unwrap_or_else(|p| p.into_inner());
    let previous = std::mem::replace(&mut *current, args.filter.clone());
    tracing::info!(filter = %args.filter, %previous, "log filter changed");
    Ok(FilterChanged {
        filter: args.filter,
        previous,
    })
}
