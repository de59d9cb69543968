//! `spin:postgres/postgres@4.2.0` (WASIp3 Spin, spin-sdk 7): the calls and
//! types of 4.0.0 (the model), a `connection-builder` (4.1.0) whose
//! `set-ca-root` adds PEM roots the connection's TLS trusts besides the
//! system's, and `async` twins (4.2.0). `query-async` hands the rows over as
//! a stream; they come from the same bounded query as every other
//! version's (at most `MAX_RESULT_BYTES`), so the stream holds no more than
//! a row set would.

use super::{Connection, ConnectionBuilder, check_ca_root, model};
use crate::bindings::imports::spin::postgres::postgres as wit;
use crate::state::InstanceState;
use wasmtime::component::{Accessor, FutureReader, HasSelf, Resource, StreamReader};

type Outcome<R> = wasmtime::Result<Result<R, wit::Error>>;

/// Roots one builder may be given: each is parsed into every pool made
/// with it.
const MAX_CA_ROOTS: usize = 16;

/// `From<$from> for $to` between two variant types generated from the same
/// WIT shape: `units` map to themselves, `same` keep their payload, and the
/// arms after them convert the rest.
macro_rules! variant_from {
    ($from:ty => $to:ty; units: [$($unit:ident),* $(,)?]; same: [$($same:ident),* $(,)?] $(; $($pat:pat => $arm:expr),+ $(,)?)?) => {
        impl From<$from> for $to {
            fn from(value: $from) -> Self {
                type F = $from;
                match value {
                    $(F::$unit => Self::$unit,)*
                    $(F::$same(v) => Self::$same(v),)*
                    $($($pat => $arm,)+)?
                }
            }
        }
    };
}

variant_from!(wit::RangeBoundKind => model::RangeBoundKind; units: [Inclusive, Exclusive]; same: []);
variant_from!(model::RangeBoundKind => wit::RangeBoundKind; units: [Inclusive, Exclusive]; same: []);

/// A range's bound with its kind converted.
fn bound<T, A: Into<B>, B>(bound: Option<(T, A)>) -> Option<(T, B)> {
    bound.map(|(value, kind)| (value, kind.into()))
}

variant_from!(wit::ParameterValue => model::ParameterValue;
    units: [DbNull];
    same: [Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary, Date, Time, Datetime, Timestamp, Uuid, Jsonb,
           Decimal, ArrayInt32, ArrayInt64, ArrayDecimal, ArrayStr];
    wit::ParameterValue::RangeInt32((lower, upper)) => Self::RangeInt32((bound(lower), bound(upper))),
    wit::ParameterValue::RangeInt64((lower, upper)) => Self::RangeInt64((bound(lower), bound(upper))),
    wit::ParameterValue::RangeDecimal((lower, upper)) => Self::RangeDecimal((bound(lower), bound(upper))),
    wit::ParameterValue::Interval(i) => Self::Interval(model::Interval { micros: i.micros, days: i.days, months: i.months }),
);

variant_from!(model::DbValue => wit::DbValue;
    units: [DbNull];
    same: [Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary, Date, Time, Datetime, Timestamp, Uuid, Jsonb,
           Decimal, ArrayInt32, ArrayInt64, ArrayDecimal, ArrayStr, Unsupported];
    model::DbValue::RangeInt32((lower, upper)) => Self::RangeInt32((bound(lower), bound(upper))),
    model::DbValue::RangeInt64((lower, upper)) => Self::RangeInt64((bound(lower), bound(upper))),
    model::DbValue::RangeDecimal((lower, upper)) => Self::RangeDecimal((bound(lower), bound(upper))),
    model::DbValue::Interval(i) => Self::Interval(wit::Interval { micros: i.micros, days: i.days, months: i.months }),
);

variant_from!(model::DbDataType => wit::DbDataType;
    units: [Boolean, Int8, Int16, Int32, Int64, Floating32, Floating64, Str, Binary, Date, Time, Datetime, Timestamp, Uuid, Jsonb,
            Decimal, RangeInt32, RangeInt64, RangeDecimal, ArrayInt32, ArrayInt64, ArrayDecimal, ArrayStr, Interval];
    same: [Other]);

variant_from!(model::QueryError => wit::QueryError;
    units: [];
    same: [Text];
    model::QueryError::DbError(e) => Self::DbError(wit::DbError {
        as_text: e.as_text,
        severity: e.severity,
        code: e.code,
        message: e.message,
        detail: e.detail,
        extras: e.extras,
    }),
);

variant_from!(model::Error => wit::Error;
    units: [];
    same: [ConnectionFailed, BadParameter, ValueConversionFailed, Other];
    model::Error::QueryFailed(e) => Self::QueryFailed(e.into()),
);

fn column(column: model::Column) -> wit::Column {
    wit::Column { name: column.name, data_type: column.data_type.into() }
}

fn row(values: Vec<model::DbValue>) -> Vec<wit::DbValue> {
    values.into_iter().map(Into::into).collect()
}

fn params(params: Vec<wit::ParameterValue>) -> Vec<model::ParameterValue> {
    params.into_iter().map(Into::into).collect()
}

impl wit::HostConnection for InstanceState {
    async fn open(&mut self, address: String) -> Outcome<Resource<Connection>> {
        Ok(self.open_postgres(&address, &[]).await?.map_err(Into::into))
    }

    async fn query(&mut self, self_: Resource<Connection>, statement: String, params: Vec<wit::ParameterValue>) -> Outcome<wit::RowSet> {
        let rows = self.table.get(&self_)?.query(statement, self::params(params)).await;
        Ok(rows
            .map(|rows| wit::RowSet { columns: rows.columns.into_iter().map(column).collect(), rows: rows.rows.into_iter().map(row).collect() })
            .map_err(Into::into))
    }

    async fn execute(&mut self, self_: Resource<Connection>, statement: String, params: Vec<wit::ParameterValue>) -> Outcome<u64> {
        let changed = self.table.get(&self_)?.execute(statement, self::params(params));
        Ok(changed.await.map_err(Into::into))
    }

    async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wit::HostConnectionBuilder for InstanceState {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<ConnectionBuilder>> {
        Ok(self.table.push(ConnectionBuilder { address, ca_roots: Vec::new() })?)
    }

    async fn set_ca_root(&mut self, self_: Resource<ConnectionBuilder>, certificate: String) -> Outcome<()> {
        let builder = self.table.get_mut(&self_)?;
        if builder.ca_roots.len() >= MAX_CA_ROOTS {
            return Ok(Err(wit::Error::BadParameter(format!("at most {MAX_CA_ROOTS} CA roots per connection"))));
        }
        if let Err(e) = check_ca_root(&certificate) {
            return Ok(Err(e.into()));
        }
        builder.ca_roots.push(certificate);
        Ok(Ok(()))
    }

    async fn build(&mut self, self_: Resource<ConnectionBuilder>) -> Outcome<Resource<Connection>> {
        let builder = self.table.get(&self_)?;
        let (address, ca_roots) = (builder.address.clone(), builder.ca_roots.clone());
        Ok(self.open_postgres(&address, &ca_roots).await?.map_err(Into::into))
    }

    async fn drop(&mut self, rep: Resource<ConnectionBuilder>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

/// The instance's connection `self_`, shared, so a call can run without the store.
fn connection<T>(accessor: &Accessor<T, HasSelf<InstanceState>>, self_: &Resource<Connection>) -> wasmtime::Result<Connection> {
    accessor.with(|mut a| Ok(a.get().table.get(self_)?.clone()))
}

/// Opens `address` trusting `ca_roots` and adds the connection to the instance's table.
async fn open_async<T>(accessor: &Accessor<T, HasSelf<InstanceState>>, address: &str, ca_roots: &[String]) -> Outcome<Resource<Connection>> {
    let access = accessor.with(|mut a| a.get().postgres.clone());
    match access.open_trusting(address, ca_roots).await {
        Ok(connection) => accessor.with(|mut a| Ok(Ok(a.get().table.push(connection)?))),
        Err(e) => Ok(Err(e.into())),
    }
}

impl<T: Send> wit::HostConnectionWithStore<T> for HasSelf<InstanceState> {
    async fn open_async(accessor: &Accessor<T, Self>, address: String) -> Outcome<Resource<Connection>> {
        self::open_async(accessor, &address, &[]).await
    }

    async fn query_async(
        accessor: &Accessor<T, Self>,
        self_: Resource<Connection>,
        statement: String,
        params: Vec<wit::ParameterValue>,
    ) -> Outcome<(Vec<wit::Column>, StreamReader<Vec<wit::DbValue>>, FutureReader<Result<(), wit::Error>>)> {
        let rows = match connection(accessor, &self_)?.query(statement, self::params(params)).await {
            Ok(rows) => rows,
            Err(e) => return Ok(Err(e.into())),
        };
        let columns = rows.columns.into_iter().map(column).collect();
        let rows: Vec<Vec<wit::DbValue>> = rows.rows.into_iter().map(row).collect();
        accessor.with(|mut a| {
            let rows = StreamReader::new(&mut a, rows)?;
            let done = FutureReader::new(&mut a, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
            Ok(Ok((columns, rows, done)))
        })
    }

    async fn execute_async(accessor: &Accessor<T, Self>, self_: Resource<Connection>, statement: String, params: Vec<wit::ParameterValue>) -> Outcome<u64> {
        Ok(connection(accessor, &self_)?.execute(statement, self::params(params)).await.map_err(Into::into))
    }
}

impl<T: Send> wit::HostConnectionBuilderWithStore<T> for HasSelf<InstanceState> {
    async fn build_async(accessor: &Accessor<T, Self>, self_: Resource<ConnectionBuilder>) -> Outcome<Resource<Connection>> {
        let (address, ca_roots) = accessor.with(|mut a| {
            let builder = a.get().table.get(&self_)?;
            Ok::<_, wasmtime::Error>((builder.address.clone(), builder.ca_roots.clone()))
        })?;
        self::open_async(accessor, &address, &ca_roots).await
    }
}

impl wit::Host for InstanceState {}
