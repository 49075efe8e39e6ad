//! Jobs: the work of the operator's commands that is more than a call or two: collecting
//! static files under hashed names, building a staging instance from live (copying and
//! auditing media), verifying stored media against the digests recorded with them, the
//! doctor's checks of a deployment's storages and keys; and what `serve` sweeps and retries
//! beside the server. Commands in `cli/` parse their arguments and report; the work is here.

pub mod collect_static;
pub mod doctor;
pub mod housekeeping;
pub mod staging;
pub mod verify;
