//! Interfaces wharf links without a backend, so that apps importing them
//! start and get an error they can handle instead of failing to load:
//! MySQL (`fermyon:spin/mysql@2.0.0`, `spin:mysql/mysql@3.0.0`) and LLM
//! inferencing (`fermyon:spin/llm@2.0.0`). The errors are Spin's own: a
//! MySQL address not in `allowed_outbound_hosts` is "not permitted" as on
//! Spin, any other fails to connect; an LLM model not in the component's
//! `ai_models` is refused in Spin's words, any other gets the error of a
//! Spin built without its local LLM engine.

use crate::allowed_hosts::{AllowedHosts, default_port};
use crate::bindings::imports::spin::mysql::mysql as mysql_v3;
use crate::bindings::p2::fermyon::spin2_0_0::{llm, mysql as mysql_v2, rdbms_types};
use crate::state::InstanceState;
use std::collections::HashSet;
use std::sync::Arc;
use wasmtime::component::{Accessor, FutureReader, HasSelf, Resource, StreamReader};

/// A MySQL connection: none can be opened, so no value exists.
pub enum MysqlConnection {}

/// Per-instance view of what these interfaces check before they fail.
#[derive(Clone)]
pub struct Unsupported {
    pub allowed: Arc<AllowedHosts>,
    pub ai_models: Arc<HashSet<String>>,
}

impl Unsupported {
    /// Why `open(address)` of MySQL fails.
    fn mysql_open(&self, address: &str) -> String {
        let permitted = url::Url::parse(address).ok().is_some_and(|url| {
            let port = url.port().or_else(|| default_port(url.scheme()));
            match (url.host_str(), port) {
                (Some(host), Some(port)) => self.allowed.allows(url.scheme(), host, port),
                _ => false,
            }
        });
        if permitted { "MySQL is not supported by this host (wharf)".into() } else { format!("address {address} is not permitted") }
    }

    /// Why inferencing with `model` fails.
    fn llm(&self, model: &str) -> llm::Error {
        if self.ai_models.contains(model) {
            llm::Error::RuntimeError("Local LLM operations are not supported in this version of Spin.".into())
        } else {
            llm::Error::InvalidInput(format!(
                "The component does not have access to use '{model}'. To give the component access, add '{model}' to the 'ai_models' key for the component in your spin.toml manifest"
            ))
        }
    }
}

impl mysql_v2::HostConnection for InstanceState {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<MysqlConnection>, rdbms_types::Error>> {
        Ok(Err(rdbms_types::Error::ConnectionFailed(self.unsupported.mysql_open(&address))))
    }

    async fn query(
        &mut self,
        connection: Resource<MysqlConnection>,
        _: String,
        _: Vec<rdbms_types::ParameterValue>,
    ) -> wasmtime::Result<Result<rdbms_types::RowSet, rdbms_types::Error>> {
        match *self.table.get(&connection)? {}
    }

    async fn execute(&mut self, connection: Resource<MysqlConnection>, _: String, _: Vec<rdbms_types::ParameterValue>) -> wasmtime::Result<Result<(), rdbms_types::Error>> {
        match *self.table.get(&connection)? {}
    }

    async fn drop(&mut self, connection: Resource<MysqlConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl mysql_v2::Host for InstanceState {}

impl<T: Send> mysql_v3::HostConnectionWithStore<T> for HasSelf<InstanceState> {
    async fn open(accessor: &Accessor<T, Self>, address: String) -> wasmtime::Result<Result<Resource<MysqlConnection>, mysql_v3::Error>> {
        Ok(Err(mysql_v3::Error::ConnectionFailed(accessor.with(|mut a| a.get().unsupported.mysql_open(&address)))))
    }

    async fn query(
        accessor: &Accessor<T, Self>,
        connection: Resource<MysqlConnection>,
        _: String,
        _: Vec<mysql_v3::ParameterValue>,
    ) -> wasmtime::Result<Result<(Vec<mysql_v3::Column>, StreamReader<mysql_v3::Row>, FutureReader<Result<(), mysql_v3::Error>>), mysql_v3::Error>> {
        accessor.with(|mut a| match *a.get().table.get(&connection)? {})
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        connection: Resource<MysqlConnection>,
        _: String,
        _: Vec<mysql_v3::ParameterValue>,
    ) -> wasmtime::Result<Result<(), mysql_v3::Error>> {
        accessor.with(|mut a| match *a.get().table.get(&connection)? {})
    }

    async fn drop(accessor: &Accessor<T, Self>, connection: Resource<MysqlConnection>) -> wasmtime::Result<()> {
        accessor.with(|mut a| a.get().table.delete(connection).map(drop).map_err(Into::into))
    }
}

impl mysql_v3::HostConnection for InstanceState {}

impl mysql_v3::Host for InstanceState {}

impl llm::Host for InstanceState {
    async fn infer(
        &mut self,
        model: String,
        _: String,
        _: Option<llm::InferencingParams>,
    ) -> wasmtime::Result<Result<llm::InferencingResult, llm::Error>> {
        Ok(Err(self.unsupported.llm(&model)))
    }

    async fn generate_embeddings(&mut self, model: String, _: Vec<String>) -> wasmtime::Result<Result<llm::EmbeddingsResult, llm::Error>> {
        Ok(Err(self.unsupported.llm(&model)))
    }
}
