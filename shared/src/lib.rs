//! Everything the longrun services share: the operation model and events
//! ([`model`]), configuration ([`config`]), bearer tokens ([`auth`]), problem
//! details ([`problem`]), operation kinds ([`kinds`]), Redis key names
//! ([`keys`]) and all Redis access with its Lua scripts ([`store`]).

pub mod auth;
pub mod config;
pub mod keys;
pub mod kinds;
pub mod model;
pub mod problem;
pub mod redis_server;
pub mod relay;
pub mod service;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use store::Store;
