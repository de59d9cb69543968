//! What WASIp2 components read their variables with:
//! `fermyon:spin/variables@2.0.0` and `wasi:config/store@0.2.0-draft-2024-09-27`
//! (which Spin 3.x serves from the same variables).

use super::{Unreadable, component_variable};
use crate::bindings::p2::fermyon::spin2_0_0::variables::{self as spin_variables, Error};
use crate::bindings::p2::wasi::config::store as wasi_config;
use crate::state::InstanceState;

impl spin_variables::Host for InstanceState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(component_variable(&self.variables, &name).map_err(|e| match e {
            Unreadable::InvalidName => Error::InvalidName(name),
            Unreadable::Undefined => Error::Undefined(name),
        }))
    }
}

impl wasi_config::Host for InstanceState {
    /// An undefined key is `none`, as the interface says; a key that cannot
    /// name a variable is an error.
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, wasi_config::Error>> {
        Ok(match component_variable(&self.variables, &key) {
            Ok(value) => Ok(Some(value)),
            Err(Unreadable::Undefined) => Ok(None),
            Err(Unreadable::InvalidName) => Err(wasi_config::Error::Upstream(format!("invalid variable name `{key}`"))),
        })
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, wasi_config::Error>> {
        let mut all: Vec<(String, String)> = self.variables.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort();
        Ok(Ok(all))
    }
}
