//! The outermost transport of every connection: it makes bytes that arrived but were
//! not yet parsed count as input.
//!
//! ureq 3.5 waits for *new* input before it parses a response when the bytes already in
//! its buffer were looked at without being consumed. That is what happens to a server's
//! early answer to `Expect: 100-continue` (a 401 or 413 instead of `100 Continue`): the
//! await-100 step sees the answer, decides not to send the body, and leaves the answer
//! in the buffer; the response step then waits for more bytes, which nginx only
//! "sends" by closing the connection after its 5 s lingering timeout. curl reports the
//! same 401 in 0.03 s. Here the first wait after bytes were appended returns at once
//! when the buffer holds unconsumed bytes; later waits read as before, so a partial
//! answer still waits for the rest (at the cost of one more look at it).

use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

/// Wraps the transport the chain made (plain TCP, or TLS over it).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FreshInputConnector;

impl<In: Transport> Connector<In> for FreshInputConnector {
    type Out = FreshInput<In>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|inner| FreshInput {
            inner,
            unseen: false,
        }))
    }
}

/// A transport whose appended-but-unparsed input is used before waiting for more.
#[derive(Debug)]
pub(crate) struct FreshInput<T> {
    inner: T,
    /// The last read appended bytes, and no wait has happened since.
    unseen: bool,
}

impl<T: Transport> Transport for FreshInput<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        // ureq only asks for input when what it holds did not do: bytes appended by the
        // last read that it has not consumed yet get one more look first. (It reaches a
        // connection through `Box<dyn Transport>`, which only forwards `await_input`.)
        if std::mem::take(&mut self.unseen) && !self.inner.buffers().input().is_empty() {
            return Ok(true);
        }
        let progress = self.inner.await_input(timeout)?;
        self.unseen = progress;
        Ok(progress)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}
