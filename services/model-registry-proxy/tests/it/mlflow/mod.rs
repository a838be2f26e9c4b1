//! The proxy on MLflow: a failing, down or hung server, its Python client, its webhooks.

mod client_failures;
mod down;
mod hung;
mod python_client;
mod webhook;
