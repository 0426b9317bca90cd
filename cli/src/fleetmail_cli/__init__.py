"""`fleetmail`: what an administrator does, from a terminal."""
