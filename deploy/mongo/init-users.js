// MongoDB access control for fleetmail, run by mongosh on the first replica set member over its
// localhost interface (compose: mongo-init in mongo-0's network namespace; Kubernetes: the
// mongo-users container of the pod mongo-0), so the localhost exception lets it create the
// first user. Idempotent, and run on every start: it
//   1. initiates the replica set (members: $MONGO_MEMBERS, comma-separated host:port),
//   2. creates the administrator `admin` (role root, in admin) once, and logs in as it,
//   3. creates or updates one user per service, readWrite on that service's database only
//      (a new password in the secrets takes effect here; the services' connection strings
//      carry the same user and password).
// Passwords are files in $SECRETS_DIR: mongo_admin_password, mongo_<service>_password.
const fs = require("fs");

const secretsDir = process.env.SECRETS_DIR || "/run/secrets";
const read = (name) => fs.readFileSync(`${secretsDir}/${name}`, "utf8").trim();
const SERVICES = [
  { user: "job-gateway", secret: "mongo_job_gateway_password", database: "fleetmail_gateway" },
  { user: "token-service", secret: "mongo_token_service_password", database: "fleetmail_tokens" },
  { user: "notifier", secret: "mongo_notifier_password", database: "fleetmail_notifier" },
];

const admin = db.getSiblingDB("admin");
const adminPassword = read("mongo_admin_password");

function logIn() {
  try {
    return admin.auth("admin", adminPassword).ok === 1;
  } catch (e) {
    return false;
  }
}

if (!logIn()) {
  // No user yet: the localhost exception allows initiating the set and creating the first user.
  try {
    const members = process.env.MONGO_MEMBERS.split(",").map((host, i) => ({ _id: i, host }));
    rs.initiate({ _id: "rs0", members });
  } catch (e) {
    if (e.codeName !== "AlreadyInitialized") throw e;
  }
  while (!db.hello().isWritablePrimary) sleep(1000);
  admin.createUser({ user: "admin", pwd: adminPassword, roles: ["root"] });
  if (!logIn()) throw new Error("could not log in as the administrator just created");
}

while (!db.hello().isWritablePrimary) sleep(1000);
for (const service of SERVICES) {
  const database = db.getSiblingDB(service.database);
  const roles = [{ role: "readWrite", db: service.database }];
  if (database.getUser(service.user)) {
    database.updateUser(service.user, { pwd: read(service.secret), roles });
  } else {
    database.createUser({ user: service.user, pwd: read(service.secret), roles });
  }
}
print(`users in place: admin, ${SERVICES.map((s) => s.user).join(", ")}`);
