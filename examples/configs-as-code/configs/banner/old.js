return {text: "Welcome", style: "classic"};
