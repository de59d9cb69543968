//! `spin:variables/variables@3.0.0` (WASIp3 Spin): a component reads its
//! own variables.

use super::{Unreadable, component_variable};
use crate::bindings::imports::spin::variables::variables::{self as wit, Error};
use crate::state::InstanceState;
use wasmtime::component::{Accessor, HasSelf};

impl<T: Send> wit::HostWithStore<T> for HasSelf<InstanceState> {
    async fn get(accessor: &Accessor<T, Self>, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(accessor.with(|mut a| {
            let state = a.get();
            component_variable(&state.outbound_http.component, &state.variables, &name).map_err(|e| match e {
                Unreadable::InvalidName(why) => Error::InvalidName(why),
                Unreadable::Undefined(why) => Error::Undefined(why),
            })
        }))
    }
}

impl wit::Host for InstanceState {}
