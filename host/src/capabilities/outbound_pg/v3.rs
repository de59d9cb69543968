//! `spin:postgres/postgres@3.0.0` (Spin 3.x): 4.0.0 without uuid, jsonb,
//! decimal, ranges, arrays and intervals (those read as `unsupported` and
//! `other`), and with a query error that is only text.

use super::Connection;
use super::model;
use crate::bindings::p2::spin::postgres3_0_0::postgres as wit;
use crate::state::InstanceState;
use wasmtime::component::Resource;

type Outcome<R> = wasmtime::Result<Result<R, wit::Error>>;

impl From<wit::ParameterValue> for model::ParameterValue {
    fn from(value: wit::ParameterValue) -> Self {
        use wit::ParameterValue as V;
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
            V::Date(v) => Self::Date(v),
            V::Time(v) => Self::Time(v),
            V::Datetime(v) => Self::Datetime(v),
            V::Timestamp(v) => Self::Timestamp(v),
            V::DbNull => Self::DbNull,
        }
    }
}

impl From<model::DbValue> for wit::DbValue {
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
            V::Date(v) => Self::Date(v),
            V::Time(v) => Self::Time(v),
            V::Datetime(v) => Self::Datetime(v),
            V::Timestamp(v) => Self::Timestamp(v),
            V::DbNull => Self::DbNull,
            _ => Self::Unsupported,
        }
    }
}

impl From<model::DbDataType> for wit::DbDataType {
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
            T::Date => Self::Date,
            T::Time => Self::Time,
            T::Datetime => Self::Datetime,
            T::Timestamp => Self::Timestamp,
            _ => Self::Other,
        }
    }
}

impl From<model::Error> for wit::Error {
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

impl From<model::RowSet> for wit::RowSet {
    fn from(rows: model::RowSet) -> Self {
        wit::RowSet {
            columns: rows.columns.into_iter().map(|c| wit::Column { name: c.name, data_type: c.data_type.into() }).collect(),
            rows: rows.rows.into_iter().map(|row| row.into_iter().map(Into::into).collect()).collect(),
        }
    }
}

impl wit::HostConnection for InstanceState {
    async fn open(&mut self, address: String) -> Outcome<Resource<Connection>> {
        Ok(self.open_postgres(&address, &[]).await?.map_err(Into::into))
    }

    async fn query(&mut self, self_: Resource<Connection>, statement: String, params: Vec<wit::ParameterValue>) -> Outcome<wit::RowSet> {
        let rows = self.table.get(&self_)?.query(statement, params.into_iter().map(Into::into).collect());
        Ok(rows.await.map(Into::into).map_err(Into::into))
    }

    async fn execute(&mut self, self_: Resource<Connection>, statement: String, params: Vec<wit::ParameterValue>) -> Outcome<u64> {
        let changed = self.table.get(&self_)?.execute(statement, params.into_iter().map(Into::into).collect());
        Ok(changed.await.map_err(Into::into))
    }

    async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wit::Host for InstanceState {}
