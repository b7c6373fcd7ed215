return {text: "Welcome back", style: "new"};
