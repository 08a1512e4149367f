//! Test support shared by the daemon's and the end-to-end tests.
