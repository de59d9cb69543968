//! `fermyon:spin/postgres@2.0.0` (Spin 2.x/3.x) with `rdbms-types`: the
//! scalar types only (others read as `unsupported` and `other`), unsigned
//! integers refused as PostgreSQL has none, a query error only text.

use super::Connection;
use super::model;
use crate::bindings::p2::fermyon::spin2_0_0::{postgres as wit, rdbms_types as types};
use crate::state::InstanceState;
use wasmtime::component::Resource;

type Outcome<R> = wasmtime::Result<Result<R, types::Error>>;

fn parameters(params: Vec<types::ParameterValue>) -> Result<Vec<model::ParameterValue>, types::Error> {
    use types::ParameterValue as V;
    params
        .into_iter()
        .map(|value| {
            Ok(match value {
                V::Boolean(v) => model::ParameterValue::Boolean(v),
                V::Int8(v) => model::ParameterValue::Int8(v),
                V::Int16(v) => model::ParameterValue::Int16(v),
                V::Int32(v) => model::ParameterValue::Int32(v),
                V::Int64(v) => model::ParameterValue::Int64(v),
                V::Floating32(v) => model::ParameterValue::Floating32(v),
                V::Floating64(v) => model::ParameterValue::Floating64(v),
                V::Str(v) => model::ParameterValue::Str(v),
                V::Binary(v) => model::ParameterValue::Binary(v),
                V::DbNull => model::ParameterValue::DbNull,
                V::Uint8(_) | V::Uint16(_) | V::Uint32(_) | V::Uint64(_) => {
                    return Err(types::Error::ValueConversionFailed("Postgres does not support unsigned integers".into()));
                }
            })
        })
        .collect()
}

impl From<model::DbValue> for types::DbValue {
    fn from(value: model::DbValue) -> Self {
        use model::DbValue as V;
        match value {
            V::Boolean(v) => Self::Boolean(v),
            V::Int8(v) => Self::Int8(v),
            V::Int16(v) => Self::Int16(v),
            V::Int32(v) => Self::Int32(v),
            V::Int64(v) => Self::Int64(v),
            V::Floating32(v) => Self::Floating32(v),
            V::Floating64(v) => Self::Floating64(v),
            V::Str(v) => Self::Str(v),
            V::Binary(v) => Self::Binary(v),
            V::DbNull => Self::DbNull,
            _ => Self::Unsupported,
        }
    }
}

impl From<model::DbDataType> for types::DbDataType {
    fn from(ty: model::DbDataType) -> Self {
        use model::DbDataType as T;
        match ty {
            T::Boolean => Self::Boolean,
            T::Int8 => Self::Int8,
            T::Int16 => Self::Int16,
            T::Int32 => Self::Int32,
            T::Int64 => Self::Int64,
            T::Floating32 => Self::Floating32,
            T::Floating64 => Self::Floating64,
            T::Str => Self::Str,
            T::Binary => Self::Binary,
            _ => Self::Other,
        }
    }
}

impl From<model::Error> for types::Error {
    fn from(e: model::Error) -> Self {
        match e {
            model::Error::ConnectionFailed(m) => Self::ConnectionFailed(m),
            model::Error::BadParameter(m) => Self::BadParameter(m),
            model::Error::QueryFailed(q) => Self::QueryFailed(q.into_text()),
            model::Error::ValueConversionFailed(m) => Self::ValueConversionFailed(m),
            model::Error::Other(m) => Self::Other(m),
        }
    }
}

impl wit::HostConnection for InstanceState {
    async fn open(&mut self, address: String) -> Outcome<Resource<Connection>> {
        Ok(self.open_postgres(&address, &[]).await?.map_err(Into::into))
    }

    async fn query(&mut self, self_: Resource<Connection>, statement: String, params: Vec<types::ParameterValue>) -> Outcome<types::RowSet> {
        // Spin converts before it queries: the error is the conversion's.
        let params = match parameters(params) {
            Ok(params) => params,
            Err(e) => return Ok(Err(e)),
        };
        let rows = self.table.get(&self_)?.query(statement, params).await;
        Ok(rows.map_err(Into::into).map(|rows| types::RowSet {
            columns: rows.columns.into_iter().map(|c| types::Column { name: c.name, data_type: c.data_type.into() }).collect(),
            rows: rows.rows.into_iter().map(|row| row.into_iter().map(Into::into).collect()).collect(),
        }))
    }

    async fn execute(&mut self, self_: Resource<Connection>, statement: String, params: Vec<types::ParameterValue>) -> Outcome<u64> {
        let params = match parameters(params) {
            Ok(params) => params,
            Err(e) => return Ok(Err(e)),
        };
        let changed = self.table.get(&self_)?.execute(statement, params).await;
        Ok(changed.map_err(Into::into))
    }

    async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wit::Host for InstanceState {}
impl types::Host for InstanceState {}
