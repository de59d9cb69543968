//! `spin:variables/variables@3.0.0`: a component reads its own variables
//! (the `[component.x.variables]` table, rendered at load time).

use crate::bindings::imports::spin::variables::variables::{self as wit, Error};
use crate::state::InstanceState;
use wasmtime::component::{Accessor, HasSelf};

impl<T: Send> wit::HostWithStore<T> for HasSelf<InstanceState> {
    async fn get(accessor: &Accessor<T, Self>, name: String) -> wasmtime::Result<Result<String, Error>> {
        if crate::manifest::check_variable_name(&name).is_err() {
            return Ok(Err(Error::InvalidName(name)));
        }
        Ok(accessor.with(|mut a| a.get().variables.get(&name).cloned().ok_or(Error::Undefined(name))))
    }
}

impl wit::Host for InstanceState {}
