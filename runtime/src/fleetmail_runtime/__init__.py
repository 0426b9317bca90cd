"""The small runtime every fleetmail service shares."""
