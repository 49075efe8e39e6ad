//! Jobs: the work of the operator's commands that is more than a call or two: collecting
//! static files under hashed names, building a staging instance from live (copying and
//! auditing media), verifying stored media against the digests recorded with them, and the
//! doctor's checks of a deployment's storages and keys. Commands in `cli/` parse their
//! arguments and report; the work is here.

pub mod collect_static;
pub mod doctor;
pub mod staging;
pub mod verify;
