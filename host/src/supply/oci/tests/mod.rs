//! Tests against a real `docker-registry` (Debian package `docker-registry`; basic auth
//! files come from `htpasswd`, package `apache2-utils`; token-auth keys from `openssl`),
//! started per test.

pub(crate) mod harness;
mod network_tests;
mod registry_tests;
mod signing_tests;
mod token_service;
mod token_tests;
