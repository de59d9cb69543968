//! `fermyon:spin/redis@2.0.0` (WASIp2 Spin 2.x/3.x): the same calls as
//! [`super::p3`], synchronous in WIT.

use super::{Connection, Error};
use crate::state::InstanceState;
use wasmtime::component::Resource;

super::convert_to_wit!(crate::bindings::p2::fermyon::spin2_0_0::redis);
use wit::{RedisParameter, RedisResult};

type Outcome<R> = wasmtime::Result<Result<R, wit::Error>>;

impl InstanceState {
    async fn redis_call<R, F>(&mut self, conn: &Resource<Connection>, call: impl FnOnce(&Connection) -> F) -> Outcome<R>
    where
        F: Future<Output = Result<R, Error>>,
    {
        let reply = call(self.table.get(conn)?);
        Ok(reply.await.map_err(Into::into))
    }
}

impl wit::HostConnection for InstanceState {
    async fn open(&mut self, address: String) -> Outcome<Resource<Connection>> {
        match self.redis.open(&address).await {
            Ok(connection) => Ok(Ok(self.table.push(connection)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn publish(&mut self, self_: Resource<Connection>, channel: String, payload: Vec<u8>) -> Outcome<()> {
        self.redis_call(&self_, |c| c.publish(channel, payload)).await
    }

    async fn get(&mut self, self_: Resource<Connection>, key: String) -> Outcome<Option<Vec<u8>>> {
        self.redis_call(&self_, |c| c.get(key)).await
    }

    async fn set(&mut self, self_: Resource<Connection>, key: String, value: Vec<u8>) -> Outcome<()> {
        self.redis_call(&self_, |c| c.set(key, value)).await
    }

    async fn incr(&mut self, self_: Resource<Connection>, key: String) -> Outcome<i64> {
        self.redis_call(&self_, |c| c.incr(key)).await
    }

    async fn del(&mut self, self_: Resource<Connection>, keys: Vec<String>) -> Outcome<u32> {
        self.redis_call(&self_, |c| c.del(keys)).await
    }

    async fn sadd(&mut self, self_: Resource<Connection>, key: String, values: Vec<String>) -> Outcome<u32> {
        self.redis_call(&self_, |c| c.sadd(key, values)).await
    }

    async fn smembers(&mut self, self_: Resource<Connection>, key: String) -> Outcome<Vec<String>> {
        self.redis_call(&self_, |c| c.smembers(key)).await
    }

    async fn srem(&mut self, self_: Resource<Connection>, key: String, values: Vec<String>) -> Outcome<u32> {
        self.redis_call(&self_, |c| c.srem(key, values)).await
    }

    async fn execute(&mut self, self_: Resource<Connection>, command: String, arguments: Vec<RedisParameter>) -> Outcome<Vec<RedisResult>> {
        let arguments = arguments.into_iter().map(Into::into).collect();
        let replies = self.redis_call(&self_, |c| c.execute(&command, arguments)).await?;
        Ok(replies.map(|replies| replies.into_iter().map(Into::into).collect()))
    }

    async fn drop(&mut self, rep: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wit::Host for InstanceState {}
