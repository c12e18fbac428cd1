"""HTTP routes: inspection, categories, health. Each module holds one router."""
