//! Redis broker (work in progress).
