//! What handles tell the scheduler: the program's commands, each with its reply channel.
//! Handles (`Uploader`, `Upload`) own this type; only the scheduler receives it.

use crossbeam_channel::Sender;

use crate::model::{Request, UploadId};
use crate::{Error, GroupBehavior};

/// A command from the program.
pub(crate) enum Command {
    /// Persist a new upload (fsynced before the reply). The reply is its id: `id`, or
    /// the upload already created for the request's submission key.
    Create {
        id: UploadId,
        created_ms: u64,
        request: Box<Request>,
        reply: Sender<Result<UploadId, Error>>,
    },
    /// An operation on one upload.
    Op {
        id: UploadId,
        op: Op,
        reply: Sender<Result<(), Error>>,
    },
    /// The program says the network is (not) costed.
    SetCost(bool),
    /// How a group runs.
    SetGroup(String, GroupBehavior),
    /// The program (or the network watcher) saw the network change: probe now.
    NetworkChanged,
    /// The network watcher saw a link, address or route go: check the hosts of the
    /// running transfers now.
    #[cfg_attr(not(all(target_os = "linux", feature = "netlink")), allow(dead_code))]
    NetworkLost,
    /// A credentials provider or client identity was registered: uploads waiting for
    /// it go on.
    CredentialsRegistered,
    /// Stop every transfer, persist, and end the thread.
    Shutdown(Sender<()>),
}

/// Operations on one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Pause,
    Resume,
    Cancel,
    Remove,
    MakeCurrent,
}
