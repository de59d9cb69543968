//! What a component instance asks its host for once and keeps for every
//! request it serves: its variables' values and its opened key-value store.
//!
//! A WASIp3 instance serves many requests in turn on Spin 4.1+ and `wharf`
//! (up to `--max-instance-reuse-count`, and it is dropped after
//! `--idle-instance-timeout`); a WASIp2 instance serves one request, in which
//! the order component still asks twice (once itself, once in the composed
//! inventory). Each ask is a host call, and a `POST /orders` made 14 of them
//! for variables alone. The values of an app's variables are fixed while it
//! runs on `wharf` and with Spin's default providers; with a provider whose
//! values change (Vault, Azure Key Vault), a new value reaches the next
//! instance. A variable that could not be read is asked for again next time.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    // A component instance runs on one thread.
    static VARIABLES: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
    static OPENED: RefCell<HashMap<TypeId, Box<dyn Any>>> = RefCell::new(HashMap::new());
}

/// The value of variable `name`: kept from this instance's earlier read, else
/// read with `read` (and kept if it was read).
pub async fn variable(name: &str, read: impl AsyncFnOnce(&str) -> Result<String, String>) -> Result<String, String> {
    if let Some(value) = VARIABLES.with_borrow(|kept| kept.get(name).cloned()) {
        return Ok(value);
    }
    let value = read(name).await?;
    VARIABLES.with_borrow_mut(|kept| kept.insert(name.to_string(), value.clone()));
    Ok(value)
}

/// This instance's `T`: a clone of the one opened earlier, else the one
/// `open` opens (and keeps if it opened). `T` is a handle (its clones share
/// what it holds).
pub async fn opened<T: Clone + 'static, E>(open: impl AsyncFnOnce() -> Result<T, E>) -> Result<T, E> {
    let kept = OPENED.with_borrow(|kept| kept.get(&TypeId::of::<T>()).and_then(|value| value.downcast_ref::<T>()).cloned());
    if let Some(handle) = kept {
        return Ok(handle);
    }
    let handle = open().await?;
    OPENED.with_borrow_mut(|kept| kept.insert(TypeId::of::<T>(), Box::new(handle.clone())));
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn block_on<F: Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
    }

    #[test]
    fn a_variable_is_read_once_unless_reading_failed() {
        let reads = Cell::new(0);
        let read = async |name: &str| {
            reads.set(reads.get() + 1);
            if name == "missing" { Err(format!("variable `{name}`: undefined")) } else { Ok(format!("value of {name}")) }
        };
        assert_eq!(block_on(variable("admin_token", read)), Ok("value of admin_token".to_string()));
        assert_eq!(block_on(variable("admin_token", read)), Ok("value of admin_token".to_string()));
        assert_eq!(reads.get(), 1);
        assert_eq!(block_on(variable("redis_url", read)), Ok("value of redis_url".to_string()));
        assert_eq!(reads.get(), 2);
        assert!(block_on(variable("missing", read)).is_err());
        assert!(block_on(variable("missing", read)).is_err());
        assert_eq!(reads.get(), 4);
    }

    #[test]
    fn a_handle_is_opened_once_per_type_unless_opening_failed() {
        let opens = Cell::new(0);
        let open = async || {
            opens.set(opens.get() + 1);
            Ok::<_, String>(Rc::new(opens.get()))
        };
        let first = block_on(opened(open)).unwrap();
        let again = block_on(opened(open)).unwrap();
        assert!(Rc::ptr_eq(&first, &again));
        assert_eq!(opens.get(), 1);
        assert_eq!(block_on(opened(async || Err::<Rc<String>, _>("refused"))), Err("refused"));
        assert_eq!(block_on(opened(async || Ok::<_, &str>(Rc::new("text".to_string())))).unwrap().as_str(), "text");
    }
}
