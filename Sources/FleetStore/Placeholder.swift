public enum _FleetStorePlaceholder {}
