//! Between `spin:postgres@4.0.0` values and the driver's, type by type as
//! Spin maps them (which PostgreSQL types each parameter binds to, and how
//! each column type reads).

use super::Parameters;
use super::model::{DbDataType, DbValue, Interval, ParameterValue, RangeBoundKind};
use bytes::{BufMut, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::types as wire;
use rust_decimal::Decimal;
use std::error::Error as StdError;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn StdError + Sync + Send>;

/// The driver's values for a statement's parameters, or why one does not
/// convert.
pub fn parameters(params: Vec<ParameterValue>) -> Result<Parameters, String> {
    params.into_iter().map(parameter).collect()
}

fn parameter(value: ParameterValue) -> Result<Box<dyn ToSql + Send + Sync>, String> {
    Ok(match value {
        ParameterValue::Boolean(v) => Box::new(v),
        // i8 binds to PostgreSQL's one-byte `"char"`, as in Spin.
        ParameterValue::Int8(v) => Box::new(v),
        ParameterValue::Int16(v) => Box::new(v),
        ParameterValue::Int32(v) => Box::new(v),
        ParameterValue::Int64(v) => Box::new(v),
        ParameterValue::Floating32(v) => Box::new(v),
        ParameterValue::Floating64(v) => Box::new(v),
        ParameterValue::Str(v) => Box::new(v),
        ParameterValue::Binary(v) => Box::new(v),
        ParameterValue::Date(date) => Box::new(to_date(date)?),
        ParameterValue::Time(time) => Box::new(to_time(time)?),
        ParameterValue::Datetime((year, month, day, hour, minute, second, nanosecond)) => {
            Box::new(PrimitiveDateTime::new(to_date((year, month, day))?, to_time((hour, minute, second, nanosecond))?))
        }
        ParameterValue::Timestamp(seconds) => {
            Box::new(OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| format!("invalid epoch timestamp {seconds}"))?)
        }
        ParameterValue::Uuid(text) => Box::new(uuid::Uuid::parse_str(&text).map_err(|_| format!("invalid UUID {text}"))?),
        ParameterValue::Jsonb(bytes) => {
            Box::new(serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| format!("invalid JSON: {e}"))?)
        }
        ParameterValue::Decimal(text) => Box::new(decimal(&text)?),
        ParameterValue::RangeInt32((lower, upper)) => Box::new(Range { lower, upper }),
        ParameterValue::RangeInt64((lower, upper)) => Box::new(Range { lower, upper }),
        ParameterValue::RangeDecimal((lower, upper)) => {
            let decimal_bound = |(text, kind): (String, RangeBoundKind)| decimal(&text).map(|value| (value, kind));
            Box::new(Range { lower: lower.map(decimal_bound).transpose()?, upper: upper.map(decimal_bound).transpose()? })
        }
        ParameterValue::ArrayInt32(v) => Box::new(v),
        ParameterValue::ArrayInt64(v) => Box::new(v),
        ParameterValue::ArrayDecimal(v) => {
            Box::new(v.iter().map(|text| text.as_deref().map(decimal).transpose()).collect::<Result<Vec<_>, _>>()?)
        }
        ParameterValue::ArrayStr(v) => Box::new(v),
        ParameterValue::Interval(interval) => Box::new(PgInterval(interval)),
        ParameterValue::DbNull => Box::new(Null),
    })
}

fn decimal(text: &str) -> Result<Decimal, String> {
    Decimal::from_str_exact(text).map_err(|e| format!("invalid decimal {text}: {e}"))
}

fn to_date((year, month, day): (i32, u8, u8)) -> Result<Date, String> {
    Month::try_from(month)
        .ok()
        .and_then(|month| Date::from_calendar_date(year, month, day).ok())
        .ok_or_else(|| format!("invalid date y={year}, m={month}, d={day}"))
}

fn to_time((hour, minute, second, nanosecond): (u8, u8, u8, u32)) -> Result<Time, String> {
    Time::from_hms_nano(hour, minute, second, nanosecond).map_err(|_| format!("invalid time {hour}:{minute}:{second}:{nanosecond}"))
}

fn date_of(date: Date) -> (i32, u8, u8) {
    (date.year(), date.month().into(), date.day())
}

fn time_of(time: Time) -> (u8, u8, u8, u32) {
    (time.hour(), time.minute(), time.second(), time.nanosecond())
}

fn datetime_of(at: PrimitiveDateTime) -> (i32, u8, u8, u8, u8, u8, u32) {
    let ((year, month, day), (hour, minute, second, nanosecond)) = (date_of(at.date()), time_of(at.time()));
    (year, month, day, hour, minute, second, nanosecond)
}

/// What the guest is told a column holds.
pub fn data_type(ty: &Type) -> DbDataType {
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::BYTEA => DbDataType::Binary,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DbDataType::Str,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_RANGE => DbDataType::RangeInt32,
        Type::INT8_RANGE => DbDataType::RangeInt64,
        Type::NUM_RANGE => DbDataType::RangeDecimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        ref other => DbDataType::Other(other.name().to_string()),
    }
}

/// A row's values, column by column; NULL is `db-null` whatever the type.
pub fn row_values(row: &Row) -> Result<Vec<DbValue>, tokio_postgres::Error> {
    (0..row.len()).map(|i| value(row, i)).collect()
}

fn value(row: &Row, i: usize) -> Result<DbValue, tokio_postgres::Error> {
    fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize, to: impl FnOnce(T) -> DbValue) -> Result<DbValue, tokio_postgres::Error> {
        Ok(row.try_get::<_, Option<T>>(i)?.map_or(DbValue::DbNull, to))
    }
    let decimal_text = |d: Decimal| d.to_string();
    match *row.columns()[i].type_() {
        Type::BOOL => get(row, i, DbValue::Boolean),
        Type::BYTEA => get(row, i, DbValue::Binary),
        Type::FLOAT4 => get(row, i, DbValue::Floating32),
        Type::FLOAT8 => get(row, i, DbValue::Floating64),
        Type::INT2 => get(row, i, DbValue::Int16),
        Type::INT4 => get(row, i, DbValue::Int32),
        Type::INT8 => get(row, i, DbValue::Int64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => get(row, i, DbValue::Str),
        Type::TIMESTAMP => get(row, i, |at: PrimitiveDateTime| DbValue::Datetime(datetime_of(at))),
        Type::TIMESTAMPTZ => get(row, i, |at: OffsetDateTime| {
            let utc = at.to_offset(UtcOffset::UTC);
            DbValue::Datetime(datetime_of(PrimitiveDateTime::new(utc.date(), utc.time())))
        }),
        Type::DATE => get(row, i, |date: Date| DbValue::Date(date_of(date))),
        Type::TIME => get(row, i, |time: Time| DbValue::Time(time_of(time))),
        Type::UUID => get(row, i, |uuid: uuid::Uuid| DbValue::Uuid(uuid.hyphenated().to_string())),
        Type::JSONB => get(row, i, |json: serde_json::Value| DbValue::Jsonb(serde_json::to_vec(&json).unwrap_or_default())),
        Type::NUMERIC => get(row, i, |d: Decimal| DbValue::Decimal(decimal_text(d))),
        Type::INT4_RANGE => get(row, i, |r: Range<i32>| DbValue::RangeInt32(r.bounds(|v| v))),
        Type::INT8_RANGE => get(row, i, |r: Range<i64>| DbValue::RangeInt64(r.bounds(|v| v))),
        Type::NUM_RANGE => get(row, i, |r: Range<Decimal>| DbValue::RangeDecimal(r.bounds(decimal_text))),
        Type::INT4_ARRAY => get(row, i, |Array(v)| DbValue::ArrayInt32(v)),
        Type::INT8_ARRAY => get(row, i, |Array(v)| DbValue::ArrayInt64(v)),
        Type::NUMERIC_ARRAY => {
            get(row, i, |Array::<Decimal>(v)| DbValue::ArrayDecimal(v.into_iter().map(|d| d.map(decimal_text)).collect()))
        }
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => get(row, i, |Array(v)| DbValue::ArrayStr(v)),
        Type::INTERVAL => get(row, i, |PgInterval(interval)| DbValue::Interval(interval)),
        _ => get(row, i, |Raw(bytes)| DbValue::Unsupported(bytes)),
    }
}

/// A one-dimensional array column, read without reserving memory for the
/// element count its header claims: postgres-types' `Vec` does, and a
/// server (any address a guest may reach) can claim 2^31 elements, an
/// allocation that fails and aborts the whole host. Here the vector grows
/// only with elements actually present in the value.
struct Array<T>(Vec<Option<T>>);

impl<'a, T: FromSql<'a>> FromSql<'a> for Array<T> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let Kind::Array(member) = ty.kind() else { return Err(format!("{ty} is not an array type").into()) };
        let array = wire::array_from_sql(raw)?;
        if array.dimensions().count()? > 1 {
            return Err("array contains too many dimensions".into());
        }
        let mut values = Vec::new();
        let mut elements = array.values();
        while let Some(element) = elements.next()? {
            values.push(<Option<T>>::from_sql_nullable(member, element)?);
        }
        Ok(Array(values))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Array(member) if T::accepts(member))
    }
}

/// About what a value takes in memory, to bound what a query buffers.
pub fn size_of(value: &DbValue) -> usize {
    let heap = match value {
        DbValue::Str(s) | DbValue::Uuid(s) | DbValue::Decimal(s) => s.len(),
        DbValue::Binary(b) | DbValue::Jsonb(b) | DbValue::Unsupported(b) => b.len(),
        DbValue::ArrayInt32(v) => v.len() * 8,
        DbValue::ArrayInt64(v) => v.len() * 16,
        DbValue::ArrayDecimal(v) | DbValue::ArrayStr(v) => v.iter().map(|s| 24 + s.as_ref().map_or(0, String::len)).sum(),
        DbValue::RangeDecimal((lower, upper)) => [lower, upper].iter().filter_map(|b| b.as_ref()).map(|(s, _)| s.len()).sum(),
        _ => 0,
    };
    std::mem::size_of::<DbValue>() + heap
}

/// SQL NULL for a parameter of any type (`db-null`).
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A column of a type the interface does not model: its bytes in the binary
/// format (`unsupported`).
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// `interval` in its binary format: microseconds, days, months.
#[derive(Debug)]
struct PgInterval(Interval);

impl ToSql for PgInterval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_i64(self.0.micros);
        out.put_i32(self.0.days);
        out.put_i32(self.0.months);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgInterval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let raw: [u8; 16] = raw.try_into().map_err(|_| "an interval is 16 bytes")?;
        let micros = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        let days = i32::from_be_bytes(raw[8..12].try_into().expect("4 bytes"));
        let months = i32::from_be_bytes(raw[12..].try_into().expect("4 bytes"));
        Ok(PgInterval(Interval { micros, days, months }))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

/// A range with its bounds as given: PostgreSQL normalises discrete ranges
/// itself (`(1,40]` reads back as `[2,41)`). An empty range reads as no
/// bounds, as in Spin.
#[derive(Debug)]
struct Range<T> {
    lower: Option<(T, RangeBoundKind)>,
    upper: Option<(T, RangeBoundKind)>,
}

impl<T> Range<T> {
    #[allow(clippy::type_complexity)]
    fn bounds<U>(self, to: impl Fn(T) -> U) -> (Option<(U, RangeBoundKind)>, Option<(U, RangeBoundKind)>) {
        (self.lower.map(|(v, kind)| (to(v), kind)), self.upper.map(|(v, kind)| (to(v), kind)))
    }
}

fn element_type(ty: &Type) -> Option<&Type> {
    match ty.kind() {
        Kind::Range(element) => Some(element),
        _ => None,
    }
}

impl<T: ToSql> ToSql for Range<T> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let element = element_type(ty).ok_or("not a range type")?;
        let write = |side: &Option<(T, RangeBoundKind)>, out: &mut BytesMut| -> Result<wire::RangeBound<postgres_protocol::IsNull>, BoxError> {
            Ok(match side {
                None => wire::RangeBound::Unbounded,
                Some((value, kind)) => {
                    let is_null = match value.to_sql(element, out)? {
                        IsNull::Yes => postgres_protocol::IsNull::Yes,
                        IsNull::No => postgres_protocol::IsNull::No,
                    };
                    match kind {
                        RangeBoundKind::Inclusive => wire::RangeBound::Inclusive(is_null),
                        RangeBoundKind::Exclusive => wire::RangeBound::Exclusive(is_null),
                    }
                }
            })
        };
        wire::range_to_sql(|out| write(&self.lower, out), |out| write(&self.upper, out), out)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        element_type(ty).is_some_and(T::accepts)
    }

    to_sql_checked!();
}

impl<'a, T: FromSql<'a>> FromSql<'a> for Range<T> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let element = element_type(ty).ok_or("not a range type")?;
        let read = |side: wire::RangeBound<Option<&'a [u8]>>| -> Result<Option<(T, RangeBoundKind)>, BoxError> {
            let (bytes, kind) = match side {
                wire::RangeBound::Unbounded => return Ok(None),
                wire::RangeBound::Inclusive(bytes) => (bytes, RangeBoundKind::Inclusive),
                wire::RangeBound::Exclusive(bytes) => (bytes, RangeBoundKind::Exclusive),
            };
            let value = match bytes {
                Some(bytes) => T::from_sql(element, bytes)?,
                None => T::from_sql_null(element)?,
            };
            Ok(Some((value, kind)))
        };
        Ok(match wire::range_from_sql(raw)? {
            wire::Range::Empty => Range { lower: None, upper: None },
            wire::Range::Nonempty(lower, upper) => Range { lower: read(lower)?, upper: read(upper)? },
        })
    }

    fn accepts(ty: &Type) -> bool {
        element_type(ty).is_some_and(T::accepts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-dimensional array value's header claiming `elements`, then `values`.
    fn array_value(element_type: u32, elements: i32, values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut raw = Vec::new();
        for word in [1, 0, element_type as i32, elements, 1] {
            raw.extend_from_slice(&word.to_be_bytes());
        }
        for value in values {
            match value {
                Some(bytes) => {
                    raw.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                    raw.extend_from_slice(bytes);
                }
                None => raw.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        raw
    }

    #[test]
    fn an_array_claiming_more_elements_than_it_holds_is_an_error_not_an_abort() {
        let text = Type::TEXT.oid();
        let honest = array_value(text, 2, &[Some(b"a"), None]);
        let Array(values) = Array::<String>::from_sql(&Type::TEXT_ARRAY, &honest).unwrap();
        assert_eq!(values, [Some("a".to_string()), None]);
        // 2^31 - 1 strings would be 48 GiB reserved up front by postgres-types.
        let hostile = array_value(text, i32::MAX, &[Some(b"a")]);
        assert!(Array::<String>::from_sql(&Type::TEXT_ARRAY, &hostile).is_err());
        assert!(Array::<i32>::from_sql(&Type::INT4_ARRAY, &array_value(Type::INT4.oid(), i32::MAX, &[])).is_err());
    }
}
