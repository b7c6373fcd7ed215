function tier(score) {
  if (score >= 90) {
    return "gold";
  } else if (score >= 60) {
    return "silver";
  }
  return "bronze";
}

function featureFlags(platform, version) {
  const flags = {};
  flags.new_home = version >= 120;
  flags.dark_mode = platform === "iphone" || platform === "android";
  flags.beta_menu = version % 7 === 0;
  return flags;
}

const score = p.score;
const platform = p.platform;
const version = p.version_code;
const region = p.region === undefined ? "eu" : p.region;

let banner;
if (version < 100) {
  banner = "please update";
} else if (version < 150) {
  banner = "welcome back";
} else {
  banner = "enjoy the new look";
}

const limits = { eu: 10, us: 12, asia: 8 };
const endpoints = [1, 2, 3].map((n) => `https://${region}.api.example.com/v${n}`);
return {
  tier: tier(score),
  banner: banner,
  flags: featureFlags(platform, version),
  endpoints: endpoints,
  limit: limits[region] === undefined ? 5 : limits[region],
  ratio: score / 100.0,
  theme: {
    primary: platform === "iphone" ? "#0a84ff" : "#3ddc84",
    secondary: "#ffffff",
    radius: 8,
  },
  retries: 3,
  timeout_ms: 1500,
  cache_ttl: 300,
  region: region,
  platform: platform,
  version: version,
  experiments: ["a", "b", "c", "d"].filter((e) => (version + e.length) % 2 === 0),
  support_email: "help@example.com",
  max_upload_mb: tier(score) === "gold" ? 25 : 10,
  show_ads: tier(score) !== "gold",
  locale_fallback: "en",
  poll_interval_s: 60,
  min_version: 100,
};
