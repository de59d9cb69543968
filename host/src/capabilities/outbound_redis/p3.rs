//! `spin:redis/redis@3.0.0` (WASIp3 Spin): async functions.

use super::{Connection, Error};
use crate::state::InstanceState;
use wasmtime::component::{Accessor, HasSelf, Resource};

super::convert_to_wit!(crate::bindings::imports::spin::redis::redis);
use wit::{RedisParameter, RedisResult};

type Outcome<R> = wasmtime::Result<Result<R, wit::Error>>;

/// Starts `call` on the connection behind `conn` and waits for it without
/// holding the instance's state while Redis answers.
async fn run<T, R, F>(accessor: &Accessor<T, HasSelf<InstanceState>>, conn: &Resource<Connection>, call: impl FnOnce(&Connection) -> F) -> Outcome<R>
where
    F: Future<Output = Result<R, Error>>,
{
    let reply = accessor.with(|mut a| Ok::<_, wasmtime::Error>(call(a.get().table.get(conn)?)))?;
    Ok(reply.await.map_err(Into::into))
}

impl<T: Send> wit::HostConnectionWithStore<T> for HasSelf<InstanceState> {
    async fn open(accessor: &Accessor<T, Self>, address: String) -> Outcome<Resource<Connection>> {
        let redis = accessor.with(|mut a| a.get().redis.clone());
        match redis.open(&address).await {
            Ok(connection) => accessor.with(|mut a| Ok(Ok(a.get().table.push(connection)?))),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn publish(accessor: &Accessor<T, Self>, self_: Resource<Connection>, channel: String, payload: Vec<u8>) -> Outcome<()> {
        run(accessor, &self_, |c| c.publish(channel, payload)).await
    }

    async fn get(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String) -> Outcome<Option<Vec<u8>>> {
        run(accessor, &self_, |c| c.get(key)).await
    }

    async fn set(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String, value: Vec<u8>) -> Outcome<()> {
        run(accessor, &self_, |c| c.set(key, value)).await
    }

    async fn incr(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String) -> Outcome<i64> {
        run(accessor, &self_, |c| c.incr(key)).await
    }

    async fn del(accessor: &Accessor<T, Self>, self_: Resource<Connection>, keys: Vec<String>) -> Outcome<u32> {
        run(accessor, &self_, |c| c.del(keys)).await
    }

    async fn sadd(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String, values: Vec<String>) -> Outcome<u32> {
        run(accessor, &self_, |c| c.sadd(key, values)).await
    }

    async fn smembers(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String) -> Outcome<Vec<String>> {
        run(accessor, &self_, |c| c.smembers(key)).await
    }

    async fn srem(accessor: &Accessor<T, Self>, self_: Resource<Connection>, key: String, values: Vec<String>) -> Outcome<u32> {
        run(accessor, &self_, |c| c.srem(key, values)).await
    }

    async fn execute(accessor: &Accessor<T, Self>, self_: Resource<Connection>, command: String, arguments: Vec<RedisParameter>) -> Outcome<Vec<RedisResult>> {
        let arguments = arguments.into_iter().map(Into::into).collect();
        let replies = run(accessor, &self_, |c| c.execute(&command, arguments)).await?;
        Ok(replies.map(|replies| replies.into_iter().map(Into::into).collect()))
    }

    async fn drop(accessor: &Accessor<T, Self>, rep: Resource<Connection>) -> wasmtime::Result<()> {
        accessor.with(|mut a| a.get().table.delete(rep).map(drop).map_err(Into::into))
    }
}

impl wit::HostConnection for InstanceState {}

impl wit::Host for InstanceState {}
