//! `wasi:http` and `wasi:io` at `0.2.0-rc-2023-10-18`, the release candidate
//! Spin 2.x apps (spin-sdk 2.x) were built against, served by forwarding
//! each function to wasmtime's WASI 0.2 implementation. The candidate's
//! resources are bound to the 0.2 host types (`bindings::wasi_2023_10_18`),
//! so only the functions whose shape changed need converting: constructors
//! that took what 0.2 sets afterwards, headers borrowed where 0.2 takes them
//! owned, and the candidate's four-case `error` for 0.2's `error-code`.
//! The outbound policy is the same object as for 0.2 (the `WasiHttpCtxView`
//! hooks): allow-list, timeouts, local chaining.
//!
//! Where the candidate has no way to report what 0.2 reports as an error (a
//! header 0.2 refuses, a body shorter than its `content-length`), the guest
//! traps, and only its own request fails.

use crate::bindings::wasi_2023_10_18::wasi::http::types::{
    self as rc_http, Error as RcError, Method as RcMethod, RequestOptions as RcRequestOptions, Scheme as RcScheme,
};
use crate::bindings::wasi_2023_10_18::wasi::http::outgoing_handler as rc_outgoing;
use crate::bindings::wasi_2023_10_18::wasi::io::{poll as rc_poll, streams as rc_streams};
use crate::state::InstanceState;
use std::time::Duration;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::{error as io_error, poll as io_poll, streams as io_streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, IoError, StreamError, StreamResult};
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler as outgoing;
use wasmtime_wasi_http::p2::bindings::http::types::{self as http, ErrorCode, Method, Scheme};
use wasmtime_wasi_http::p2::body::{HostFutureTrailers, HostIncomingBody, HostOutgoingBody};
use wasmtime_wasi_http::p2::types::{
    HostFutureIncomingResponse, HostIncomingRequest, HostIncomingResponse, HostOutgoingRequest, HostOutgoingResponse,
    HostResponseOutparam,
};
use wasmtime_wasi_http::{FieldMap, WasiHttp, WasiHttpCtxView};

use wasmtime::Result;

/// `wasi:io` works on the resource table alone, as wasmtime's 0.2 does.
struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    rc_poll::add_to_linker::<_, Table>(linker, |state| &mut state.table)?;
    rc_streams::add_to_linker::<_, Table>(linker, |state| &mut state.table)?;
    rc_http::add_to_linker::<_, WasiHttp>(linker, InstanceState::http_view)?;
    rc_outgoing::add_to_linker::<_, WasiHttp>(linker, InstanceState::http_view)
}

/// The same resource, lent to a 0.2 function that borrows it.
fn lend<T: 'static>(resource: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(resource.rep())
}

/// What the candidate cannot report: the guest traps.
fn refused(what: &str, error: impl std::fmt::Debug) -> wasmtime::Error {
    wasmtime::format_err!("{what}: {error:?}")
}

fn method_from(method: RcMethod) -> Method {
    match method {
        RcMethod::Get => Method::Get,
        RcMethod::Head => Method::Head,
        RcMethod::Post => Method::Post,
        RcMethod::Put => Method::Put,
        RcMethod::Delete => Method::Delete,
        RcMethod::Connect => Method::Connect,
        RcMethod::Options => Method::Options,
        RcMethod::Trace => Method::Trace,
        RcMethod::Patch => Method::Patch,
        RcMethod::Other(other) => Method::Other(other),
    }
}

fn method_to(method: Method) -> RcMethod {
    match method {
        Method::Get => RcMethod::Get,
        Method::Head => RcMethod::Head,
        Method::Post => RcMethod::Post,
        Method::Put => RcMethod::Put,
        Method::Delete => RcMethod::Delete,
        Method::Connect => RcMethod::Connect,
        Method::Options => RcMethod::Options,
        Method::Trace => RcMethod::Trace,
        Method::Patch => RcMethod::Patch,
        Method::Other(other) => RcMethod::Other(other),
    }
}

fn scheme_from(scheme: RcScheme) -> Scheme {
    match scheme {
        RcScheme::Http => Scheme::Http,
        RcScheme::Https => Scheme::Https,
        RcScheme::Other(other) => Scheme::Other(other),
    }
}

fn scheme_to(scheme: Scheme) -> RcScheme {
    match scheme {
        Scheme::Http => RcScheme::Http,
        Scheme::Https => RcScheme::Https,
        Scheme::Other(other) => RcScheme::Other(other),
    }
}

/// 0.2's detailed `error-code` in the candidate's four cases.
fn error_to(code: ErrorCode) -> RcError {
    let text = format!("{code:?}");
    match code {
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestUriTooLong => RcError::InvalidUrl(text),
        ErrorCode::DnsTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => RcError::TimeoutError(text),
        ErrorCode::HttpProtocolError | ErrorCode::HttpResponseIncomplete | ErrorCode::TlsProtocolError => RcError::ProtocolError(text),
        _ => RcError::UnexpectedError(text),
    }
}

fn error_from(error: RcError) -> ErrorCode {
    let text = match error {
        RcError::InvalidUrl(text) | RcError::TimeoutError(text) | RcError::ProtocolError(text) | RcError::UnexpectedError(text) => text,
    };
    ErrorCode::InternalError(Some(text))
}

impl rc_poll::Host for ResourceTable {
    async fn poll_list(&mut self, pollables: Vec<Resource<DynPollable>>) -> Result<Vec<u32>> {
        io_poll::Host::poll(self, pollables).await
    }

    async fn poll_one(&mut self, pollable: Resource<DynPollable>) -> Result<()> {
        io_poll::HostPollable::block(self, pollable).await
    }
}

impl rc_poll::HostPollable for ResourceTable {
    fn drop(&mut self, pollable: Resource<DynPollable>) -> Result<()> {
        io_poll::HostPollable::drop(self, pollable)
    }
}

impl rc_streams::Host for ResourceTable {
    fn convert_stream_error(&mut self, error: StreamError) -> Result<rc_streams::StreamError> {
        match error {
            StreamError::Closed => Ok(rc_streams::StreamError::Closed),
            StreamError::LastOperationFailed(e) => Ok(rc_streams::StreamError::LastOperationFailed(self.push(e)?)),
            StreamError::Trap(e) => Err(e),
        }
    }
}

impl rc_streams::HostError for ResourceTable {
    fn to_debug_string(&mut self, error: Resource<IoError>) -> Result<String> {
        io_error::HostError::to_debug_string(self, error)
    }

    fn drop(&mut self, error: Resource<IoError>) -> Result<()> {
        io_error::HostError::drop(self, error)
    }
}

impl rc_streams::HostInputStream for ResourceTable {
    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        io_streams::HostInputStream::read(self, stream, len)
    }

    async fn blocking_read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        io_streams::HostInputStream::blocking_read(self, stream, len).await
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        io_streams::HostInputStream::skip(self, stream, len)
    }

    async fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        io_streams::HostInputStream::blocking_skip(self, stream, len).await
    }

    fn subscribe(&mut self, stream: Resource<DynInputStream>) -> Result<Resource<DynPollable>> {
        io_streams::HostInputStream::subscribe(self, stream)
    }

    async fn drop(&mut self, stream: Resource<DynInputStream>) -> Result<()> {
        io_streams::HostInputStream::drop(self, stream).await
    }
}

impl rc_streams::HostOutputStream for ResourceTable {
    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        io_streams::HostOutputStream::check_write(self, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, contents: Vec<u8>) -> StreamResult<()> {
        io_streams::HostOutputStream::write(self, stream, contents)
    }

    async fn blocking_write_and_flush(&mut self, stream: Resource<DynOutputStream>, contents: Vec<u8>) -> StreamResult<()> {
        io_streams::HostOutputStream::blocking_write_and_flush(self, stream, contents).await
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        io_streams::HostOutputStream::flush(self, stream)
    }

    async fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        io_streams::HostOutputStream::blocking_flush(self, stream).await
    }

    fn subscribe(&mut self, stream: Resource<DynOutputStream>) -> Result<Resource<DynPollable>> {
        io_streams::HostOutputStream::subscribe(self, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        io_streams::HostOutputStream::write_zeroes(self, stream, len)
    }

    async fn blocking_write_zeroes_and_flush(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        io_streams::HostOutputStream::blocking_write_zeroes_and_flush(self, stream, len).await
    }

    // The candidate's splices take the source stream owned (0.2 borrows it):
    // the guest gave it up, so it is dropped once spliced.
    fn splice(&mut self, stream: Resource<DynOutputStream>, src: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        let spliced = io_streams::HostOutputStream::splice(self, stream, lend(&src), len);
        self.delete(src)?;
        spliced
    }

    async fn blocking_splice(&mut self, stream: Resource<DynOutputStream>, src: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        let spliced = io_streams::HostOutputStream::blocking_splice(self, stream, lend(&src), len).await;
        self.delete(src)?;
        spliced
    }

    /// Everything `src` has, until it closes.
    async fn forward(&mut self, stream: Resource<DynOutputStream>, src: Resource<DynInputStream>) -> StreamResult<u64> {
        const CHUNK: u64 = 64 * 1024;
        let mut total = 0u64;
        let forwarded = loop {
            match io_streams::HostOutputStream::blocking_splice(self, lend(&stream), lend(&src), CHUNK).await {
                Ok(n) => total += n,
                Err(StreamError::Closed) => break Ok(total),
                Err(e) => break Err(e),
            }
        };
        self.delete(src)?;
        forwarded
    }

    async fn drop(&mut self, stream: Resource<DynOutputStream>) -> Result<()> {
        io_streams::HostOutputStream::drop(self, stream).await
    }
}

impl rc_http::Host for WasiHttpCtxView<'_> {}

impl rc_http::HostFields for WasiHttpCtxView<'_> {
    fn new(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<Resource<FieldMap>> {
        http::HostFields::from_list(self, entries).map_err(|e| refused("headers refused", e))
    }

    fn get(&mut self, fields: Resource<FieldMap>, name: String) -> Result<Vec<Vec<u8>>> {
        http::HostFields::get(self, fields, name)
    }

    fn set(&mut self, fields: Resource<FieldMap>, name: String, values: Vec<Vec<u8>>) -> Result<()> {
        http::HostFields::set(self, fields, name, values).map_err(|e| refused("header refused", e))
    }

    fn delete(&mut self, fields: Resource<FieldMap>, name: String) -> Result<()> {
        http::HostFields::delete(self, fields, name).map_err(|e| refused("header not deleted", e))
    }

    fn append(&mut self, fields: Resource<FieldMap>, name: String, value: Vec<u8>) -> Result<()> {
        http::HostFields::append(self, fields, name, value).map_err(|e| refused("header refused", e))
    }

    fn entries(&mut self, fields: Resource<FieldMap>) -> Result<Vec<(String, Vec<u8>)>> {
        http::HostFields::entries(self, fields)
    }

    fn clone(&mut self, fields: Resource<FieldMap>) -> Result<Resource<FieldMap>> {
        http::HostFields::clone(self, fields)
    }

    fn drop(&mut self, fields: Resource<FieldMap>) -> Result<()> {
        http::HostFields::drop(self, fields)
    }
}

impl rc_http::HostIncomingRequest for WasiHttpCtxView<'_> {
    fn method(&mut self, request: Resource<HostIncomingRequest>) -> Result<RcMethod> {
        http::HostIncomingRequest::method(self, request).map(method_to)
    }

    fn path_with_query(&mut self, request: Resource<HostIncomingRequest>) -> Result<Option<String>> {
        http::HostIncomingRequest::path_with_query(self, request)
    }

    fn scheme(&mut self, request: Resource<HostIncomingRequest>) -> Result<Option<RcScheme>> {
        Ok(http::HostIncomingRequest::scheme(self, request)?.map(scheme_to))
    }

    fn authority(&mut self, request: Resource<HostIncomingRequest>) -> Result<Option<String>> {
        http::HostIncomingRequest::authority(self, request)
    }

    fn headers(&mut self, request: Resource<HostIncomingRequest>) -> Result<Resource<FieldMap>> {
        http::HostIncomingRequest::headers(self, request)
    }

    fn consume(&mut self, request: Resource<HostIncomingRequest>) -> Result<Result<Resource<HostIncomingBody>, ()>> {
        http::HostIncomingRequest::consume(self, request)
    }

    fn drop(&mut self, request: Resource<HostIncomingRequest>) -> Result<()> {
        http::HostIncomingRequest::drop(self, request)
    }
}

impl rc_http::HostOutgoingRequest for WasiHttpCtxView<'_> {
    /// 0.2 makes the request from owned headers, then sets the rest.
    fn new(
        &mut self,
        method: RcMethod,
        path_with_query: Option<String>,
        scheme: Option<RcScheme>,
        authority: Option<String>,
        headers: Resource<FieldMap>,
    ) -> Result<Resource<HostOutgoingRequest>> {
        let headers = http::HostFields::clone(self, headers)?;
        let request = http::HostOutgoingRequest::new(self, headers)?;
        http::HostOutgoingRequest::set_method(self, lend(&request), method_from(method))?.map_err(|()| refused("method refused", ()))?;
        http::HostOutgoingRequest::set_path_with_query(self, lend(&request), path_with_query)?
            .map_err(|()| refused("path refused", ()))?;
        http::HostOutgoingRequest::set_scheme(self, lend(&request), scheme.map(scheme_from))?.map_err(|()| refused("scheme refused", ()))?;
        http::HostOutgoingRequest::set_authority(self, lend(&request), authority)?.map_err(|()| refused("authority refused", ()))?;
        Ok(request)
    }

    fn write(&mut self, request: Resource<HostOutgoingRequest>) -> Result<Result<Resource<HostOutgoingBody>, ()>> {
        http::HostOutgoingRequest::body(self, request)
    }

    fn drop(&mut self, request: Resource<HostOutgoingRequest>) -> Result<()> {
        http::HostOutgoingRequest::drop(self, request)
    }
}

impl rc_http::HostResponseOutparam for WasiHttpCtxView<'_> {
    fn set(&mut self, param: Resource<HostResponseOutparam>, response: Result<Resource<HostOutgoingResponse>, RcError>) -> Result<()> {
        http::HostResponseOutparam::set(self, param, response.map_err(error_from))
    }

    fn drop(&mut self, param: Resource<HostResponseOutparam>) -> Result<()> {
        http::HostResponseOutparam::drop(self, param)
    }
}

impl rc_http::HostIncomingResponse for WasiHttpCtxView<'_> {
    fn status(&mut self, response: Resource<HostIncomingResponse>) -> Result<u16> {
        http::HostIncomingResponse::status(self, response)
    }

    fn headers(&mut self, response: Resource<HostIncomingResponse>) -> Result<Resource<FieldMap>> {
        http::HostIncomingResponse::headers(self, response)
    }

    fn consume(&mut self, response: Resource<HostIncomingResponse>) -> Result<Result<Resource<HostIncomingBody>, ()>> {
        http::HostIncomingResponse::consume(self, response)
    }

    fn drop(&mut self, response: Resource<HostIncomingResponse>) -> Result<()> {
        http::HostIncomingResponse::drop(self, response)
    }
}

impl rc_http::HostIncomingBody for WasiHttpCtxView<'_> {
    fn stream(&mut self, body: Resource<HostIncomingBody>) -> Result<Result<Resource<DynInputStream>, ()>> {
        http::HostIncomingBody::stream(self, body)
    }

    fn finish(&mut self, body: Resource<HostIncomingBody>) -> Result<Resource<HostFutureTrailers>> {
        http::HostIncomingBody::finish(self, body)
    }

    fn drop(&mut self, body: Resource<HostIncomingBody>) -> Result<()> {
        http::HostIncomingBody::drop(self, body)
    }
}

impl rc_http::HostFutureTrailers for WasiHttpCtxView<'_> {
    fn subscribe(&mut self, trailers: Resource<HostFutureTrailers>) -> Result<Resource<DynPollable>> {
        http::HostFutureTrailers::subscribe(self, trailers)
    }

    /// The candidate has no "no trailers": an empty set stands for none.
    fn get(&mut self, trailers: Resource<HostFutureTrailers>) -> Result<Option<Result<Resource<FieldMap>, RcError>>> {
        let got = match http::HostFutureTrailers::get(self, trailers)? {
            None => return Ok(None),
            Some(Err(())) => return Err(refused("trailers", "already taken")),
            Some(Ok(got)) => got,
        };
        Ok(Some(match got {
            Ok(Some(trailers)) => Ok(trailers),
            Ok(None) => Ok(http::HostFields::new(self)?),
            Err(code) => Err(error_to(code)),
        }))
    }

    fn drop(&mut self, trailers: Resource<HostFutureTrailers>) -> Result<()> {
        http::HostFutureTrailers::drop(self, trailers)
    }
}

impl rc_http::HostOutgoingResponse for WasiHttpCtxView<'_> {
    /// 0.2 makes the response from owned headers, then sets the status.
    fn new(&mut self, status: u16, headers: Resource<FieldMap>) -> Result<Resource<HostOutgoingResponse>> {
        let headers = http::HostFields::clone(self, headers)?;
        let response = http::HostOutgoingResponse::new(self, headers)?;
        http::HostOutgoingResponse::set_status_code(self, lend(&response), status)?
            .map_err(|()| refused("status refused", status))?;
        Ok(response)
    }

    fn write(&mut self, response: Resource<HostOutgoingResponse>) -> Result<Result<Resource<HostOutgoingBody>, ()>> {
        http::HostOutgoingResponse::body(self, response)
    }

    fn drop(&mut self, response: Resource<HostOutgoingResponse>) -> Result<()> {
        http::HostOutgoingResponse::drop(self, response)
    }
}

impl rc_http::HostOutgoingBody for WasiHttpCtxView<'_> {
    fn write(&mut self, body: Resource<HostOutgoingBody>) -> Result<Result<Resource<DynOutputStream>, ()>> {
        http::HostOutgoingBody::write(self, body)
    }

    fn finish(&mut self, body: Resource<HostOutgoingBody>, trailers: Option<Resource<FieldMap>>) -> Result<()> {
        http::HostOutgoingBody::finish(self, body, trailers).map_err(|e| refused("body refused", e))
    }

    fn drop(&mut self, body: Resource<HostOutgoingBody>) -> Result<()> {
        http::HostOutgoingBody::drop(self, body)
    }
}

impl rc_http::HostFutureIncomingResponse for WasiHttpCtxView<'_> {
    fn get(
        &mut self,
        response: Resource<HostFutureIncomingResponse>,
    ) -> Result<Option<Result<Result<Resource<HostIncomingResponse>, RcError>, ()>>> {
        Ok(http::HostFutureIncomingResponse::get(self, response)?.map(|got| got.map(|answer| answer.map_err(error_to))))
    }

    fn subscribe(&mut self, response: Resource<HostFutureIncomingResponse>) -> Result<Resource<DynPollable>> {
        http::HostFutureIncomingResponse::subscribe(self, response)
    }

    fn drop(&mut self, response: Resource<HostFutureIncomingResponse>) -> Result<()> {
        http::HostFutureIncomingResponse::drop(self, response)
    }
}

impl rc_outgoing::Host for WasiHttpCtxView<'_> {
    fn handle(
        &mut self,
        request: Resource<HostOutgoingRequest>,
        options: Option<RcRequestOptions>,
    ) -> Result<Result<Resource<HostFutureIncomingResponse>, RcError>> {
        let options = match options {
            None => None,
            Some(options) => Some(request_options(self, options)?),
        };
        match outgoing::Host::handle(self, request, options) {
            Ok(response) => Ok(Ok(response)),
            Err(e) => Ok(Err(error_to(e.downcast()?))),
        }
    }
}

/// The candidate's timeouts in milliseconds as 0.2's `request-options`.
fn request_options(view: &mut WasiHttpCtxView<'_>, options: RcRequestOptions) -> Result<Resource<http::RequestOptions>> {
    let nanos = |ms: Option<u32>| ms.map(|ms| Duration::from_millis(ms.into()).as_nanos() as u64);
    let made = http::HostRequestOptions::new(view)?;
    let set = [
        http::HostRequestOptions::set_connect_timeout(view, lend(&made), nanos(options.connect_timeout_ms))?,
        http::HostRequestOptions::set_first_byte_timeout(view, lend(&made), nanos(options.first_byte_timeout_ms))?,
        http::HostRequestOptions::set_between_bytes_timeout(view, lend(&made), nanos(options.between_bytes_timeout_ms))?,
    ];
    if set.iter().any(Result::is_err) {
        return Err(refused("request options refused", options));
    }
    Ok(made)
}
