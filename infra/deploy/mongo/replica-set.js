// Initiates the replica set rs0 of three mongods, waits for a primary and makes paypost's
// database user; running it again changes nothing. Run as MongoDB's root user on the first member,
// by compose.yaml's mongo-init and by kubernetes/mongodb.yaml's Job (which holds a copy of this
// file: tests/unit/test_deploy.py keeps the two the same).
//   MONGO_MEMBERS                host:port of each member, comma-separated, the first one preferred
//   MONGO_PAYPOST_PASSWORD_FILE  the file holding the password of the user "paypost"
//   MONGO_EXPORTER_PASSWORD      if set, the password of the user "exporter" (compose's mongodb-exporter)
const fs = require("fs");
const members = process.env.MONGO_MEMBERS.split(",");

try {
  rs.status();
} catch (error) {
  if (error.codeName !== "NotYetInitialized") throw error;
  rs.initiate({
    _id: "rs0",
    // The first member is preferred as primary only so that this script finds it there.
    members: members.map((host, i) => ({ _id: i, host, priority: i === 0 ? 2 : 1 })),
  });
}
while (!db.hello().isWritablePrimary) sleep(500);

const admin = db.getSiblingDB("admin");
if (admin.getUser("paypost") === null) {
  admin.createUser({
    user: "paypost",
    pwd: fs.readFileSync(process.env.MONGO_PAYPOST_PASSWORD_FILE, "utf8").trim(),
    // paypost's one database (PAYPOST_MONGODB_DB): its collections, indexes and change streams.
    roles: [{ role: "readWrite", db: "paypost" }],
  });
}

// The metrics exporter beside compose's stack: MongoDB's own figures, read-only.
if (process.env.MONGO_EXPORTER_PASSWORD && admin.getUser("exporter") === null) {
  admin.createUser({
    user: "exporter",
    pwd: process.env.MONGO_EXPORTER_PASSWORD,
    roles: [{ role: "clusterMonitor", db: "admin" }, { role: "read", db: "local" }],
  });
}
