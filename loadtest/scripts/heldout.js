// heldout.star in JavaScript: a string-hashing loop over the user id, a
// filter and map over a tag array, a 20-key object with nested objects.
function bucketOf(s, salt) {
  let h = 7;
  const text = salt + ":" + s;
  for (let i = 0; i < text.length; i++) {
    h = (h * 31 + text.charCodeAt(i)) % 1000003;
  }
  return h % 100;
}

function level(score) {
  if (score >= 90) return "gold";
  if (score >= 60) return "silver";
  return "bronze";
}

const user = p.user_id;
const score = p.score;
const platform = p.platform;
const version = p.version_code;
const tags = p.tags;
const prefs = p.prefs;
const region = p.region || "eu";

const b = bucketOf(user, "home-v2");
const interests = tags.filter((t) => t.length > 3).map((t) => t.toUpperCase());
const dark = prefs.dark || false;
const notify = prefs.notify || {};

return {
  user_bucket: b,
  home: b < 30 ? "v2" : "v1",
  level: level(score),
  interests: interests,
  feed: {
    size: platform === "iphone" ? 20 : 15,
    topics: interests.slice(0, 3),
    ads: { every: level(score) === "bronze" ? 5 : 12, video: version >= 130 },
  },
  theme: {
    mode: dark ? "dark" : "light",
    accent: b % 2 === 0 ? "#ff9500" : "#5856d6",
    font: { size: 15, family: "system" },
  },
  notifications: {
    email: notify.email || false,
    push: (notify.push === undefined ? true : notify.push) && version >= 110,
  },
  lang: prefs.lang || "en",
  region: region,
  platform: platform,
  version: version,
  retries: 3,
  timeout_ms: region === "eu" ? 1500 : 2500,
  cache_ttl: 300,
  min_version: 100,
  beta: b < 5,
  support: "help@example.com",
  poll_s: score > 50 ? 60 : 120,
  upload_mb: 25,
};
