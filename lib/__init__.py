"""Everything handlers, jobs and the gateway share; never imports functions/ or runtime/."""
