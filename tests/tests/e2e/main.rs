//! End-to-end tests: the real `semdex` binary, run as a user or a CI job would run it.

/// `semdex index` and `semdex search` on the embedded default.
mod cli;

/// `semdex backup`, `restore`, `migrate` and `status` on fresh data directories.
mod backup;
