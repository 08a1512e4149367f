//! semdex, the daemon: configuration, stores, embedders, vector indexes, search, the job runner,
//! the HTTP API and the CLI. The thin binary in `main.rs` calls [`cli::main`].

pub mod api;
pub mod backup;
pub mod cli;
pub mod config;
pub mod embed;
pub mod engine;
pub mod hooks;
pub mod indexing;
pub mod lexical;
pub mod runner;
pub mod search;
pub mod serve;
pub mod store;
pub mod vector;
pub mod watch;
