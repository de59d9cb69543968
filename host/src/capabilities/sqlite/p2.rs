//! `fermyon:spin/sqlite@2.0.0` (WASIp2 Spin 2.x/3.x): open and execute,
//! synchronous in WIT.

super::connection_in_wit!(crate::bindings::p2::fermyon::spin2_0_0::sqlite, {});
