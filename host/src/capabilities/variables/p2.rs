//! What WASIp2 components read their variables with:
//! `fermyon:spin/variables@2.0.0` and `wasi:config/store@0.2.0-draft-2024-09-27`
//! (which Spin 3.x serves from the same variables).

use super::{Unreadable, component_variable};
use crate::bindings::p2::fermyon::spin2_0_0::variables::{self as spin_variables, Error};
use crate::bindings::p2::wasi::config::store as wasi_config;
use crate::state::InstanceState;

impl spin_variables::Host for InstanceState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(component_variable(&self.outbound_http.component, &self.variables, &name).map_err(|e| match e {
            Unreadable::InvalidName(why) => Error::InvalidName(why),
            Unreadable::Undefined(why) => Error::Undefined(why),
        }))
    }
}

impl wasi_config::Host for InstanceState {
    /// A key that names no variable is `none`, as the interface says for an
    /// undefined one and as Spin answers for one that cannot be a name.
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, wasi_config::Error>> {
        Ok(Ok(component_variable(&self.outbound_http.component, &self.variables, &key).ok()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, wasi_config::Error>> {
        let mut all: Vec<(String, String)> = self.variables.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort();
        Ok(Ok(all))
    }
}
