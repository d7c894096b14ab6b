//! Why a service (api, worker or gateway) could not start or stopped
//! serving: one error type for every service's `run`.

use crate::config::ConfigError;
use crate::store::StoreError;

/// A service's start-up or serving failure.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration is incomplete or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis refused to connect or failed a start-up check.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}
