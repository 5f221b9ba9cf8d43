//! Start-up of the concert booking server: configuration, wiring of adapters and use cases,
//! background jobs and graceful shutdown. The binary `concert-server` is a thin `main` over
//! [`Application`]; the end-to-end tests start the same [`Application`] in process.

pub mod app;
pub mod config;
mod demo;
pub mod identity;
pub mod jobs;
pub mod lingering;
pub mod serve;
pub mod store;
pub mod telemetry;

pub use app::Application;
pub use config::Config;
