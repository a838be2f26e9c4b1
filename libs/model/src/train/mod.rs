//! Training the models `stockcast train` exports: closed-form ridge regression for now.

pub mod ridge;
