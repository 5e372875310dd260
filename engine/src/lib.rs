//! strata (work in progress)
mod db_iter;
mod memtable;
mod merge;
