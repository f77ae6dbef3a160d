"""xenstored: the store engine (store, perms, quota, transaction), the
xs_wire protocol (protocol), the socket and ring transports (server, ring,
attach) and the daemon's command line (daemon)."""
